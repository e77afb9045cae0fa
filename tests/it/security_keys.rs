//! Issue #14 (API.md section 15, rules 14, 18 and 19): a token's issuer does not follow the
//! listen address, old password hashes cost the current time, restores keep to their own
//! install, and a revoked signing key stops its tokens at once.

use latchkey::model::{Role, Status};
use latchkey::store::{Store, StoreError};

use crate::support::TestServer;

/// Waits (briefly) until every handle of a stopped in-process server has let go of the store.
async fn wait_until_store_is_free(data_dir: &std::path::Path) {
    let path = data_dir.join("latchkey.redb");
    for _ in 0..200 {
        match Store::open(&path, 1024 * 1024) {
            Ok(_) => return,
            Err(StoreError::Locked { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(other) => panic!("{other}"),
        }
    }
    panic!("the stopped server still holds the store");
}

#[tokio::test]
async fn a_token_stays_valid_when_the_server_restarts_on_another_port() {
    let data_dir = tempfile::tempdir().unwrap();
    let data_path = data_dir.path().to_path_buf();
    let first = TestServer::start_with(|config| config.store.data_dir = data_path.clone()).await;
    first.add_user("moves@example.com", Role::User, Status::Active);
    let signed_in = first.sign_in("moves@example.com").await;
    assert_eq!(
        first.current_user_status(&signed_in.signed_token).await,
        200
    );
    let first_address = first.address;
    let first_issuer = first.app.issuer.clone();
    assert!(first_issuer.starts_with("urn:latchkey:"), "{first_issuer}");
    first.stop().await;
    wait_until_store_is_free(&data_path).await;

    // Another port (and the listen address in the config with it), the same data dir.
    let second = TestServer::start_with(|config| config.store.data_dir = data_path.clone()).await;
    assert_ne!(second.address, first_address);
    assert_eq!(second.app.issuer, first_issuer);
    assert_eq!(
        second.current_user_status(&signed_in.signed_token).await,
        200
    );
    second.stop().await;
}

#[tokio::test]
async fn a_set_public_url_is_the_issuer() {
    let server = TestServer::start_with(|config| {
        config.server.public_url = Some("https://auth.example.com".parse().unwrap());
    })
    .await;
    assert_eq!(server.app.issuer, "https://auth.example.com");
    server.stop().await;
}
