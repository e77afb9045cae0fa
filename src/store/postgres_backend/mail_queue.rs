//! Store functions for the mail queue on PostgreSQL, as `redb_backend/mail_queue.rs`.

use deadpool_postgres::GenericClient;

use crate::model::{OutgoingMail, UnixSeconds};
use crate::store::StoreError;

/// Queues a message, due at once, inside the change that causes it.
pub(super) async fn enqueue(
    client: &impl GenericClient,
    mail: &OutgoingMail,
    now: UnixSeconds,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO mail_queue (id, to_address, subject, text_body, html_body, attempts, \
             next_attempt_at) VALUES (nextval('mail_ids'), $1, $2, $3, $4, 0, $5)",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &mail.to,
                &mail.subject,
                mail.text.expose_secret(),
                mail.html.expose_secret(),
                &now,
            ],
        )
        .await?;
    Ok(())
}

/// Drops every queued message to one of `addresses` (their accounts are being deleted).
pub(super) async fn remove_mail_to(
    client: &impl GenericClient,
    addresses: &[String],
) -> Result<(), StoreError> {
    if addresses.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached("DELETE FROM mail_queue WHERE to_address = ANY($1)")
        .await?;
    client.execute(&statement, &[&addresses]).await?;
    Ok(())
}
