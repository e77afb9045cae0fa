//! Store functions for second factors on PostgreSQL: TOTP, recovery codes, mfa-tokens, as
//! `redb_backend/second_factors.rs`.

use deadpool_postgres::GenericClient;

use crate::model::UserId;
use crate::store::StoreError;
use crate::store::postgres_backend::rows::user_id_to_sql;

/// Removes every second factor of a user (`mfa-reset`, and the user's deletion), with its
/// mfa-tokens and open passkey ceremonies: none could be completed, and the user's row
/// cannot go while a row refers to it.
pub(super) async fn delete_second_factors_of_user(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<(), StoreError> {
    let user_id = user_id_to_sql(user_id)?;
    for table in [
        "active_totp",
        "pending_totp",
        "recovery_codes",
        "mfa_tokens",
        "passkeys",
        "passkey_challenges",
    ] {
        let statement = client
            .prepare_cached(&format!("DELETE FROM {table} WHERE user_id = $1"))
            .await?;
        client.execute(&statement, &[&user_id]).await?;
    }
    Ok(())
}
