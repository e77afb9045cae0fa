//! Store functions for the mail queue on PostgreSQL, as `redb_backend/mail_queue.rs`.

use deadpool_postgres::GenericClient;

use crate::model::{OutgoingMail, QueuedMail, Secret, UnixSeconds};
use crate::store::StoreError;
use crate::store::postgres_backend::rows::unsigned_from_sql;
use crate::store::postgres_backend::{PostgresStore, begin_write};

impl PostgresStore {
    /// Messages due for a delivery attempt, oldest first.
    pub async fn due_mails(
        &self,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(
                "SELECT id, to_address, subject, text_body, html_body, attempts, \
                 next_attempt_at FROM mail_queue WHERE next_attempt_at <= $1 \
                 ORDER BY id LIMIT $2",
            )
            .await?;
        // The redb backend stops once it holds `limit` messages, after taking the first: a
        // limit of 0 still gives one.
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        client
            .query(&statement, &[&now, &limit])
            .await?
            .iter()
            .map(queued_mail_from_row)
            .collect()
    }

    /// Takes up to `limit` due messages for this node to send: those due longest (then by
    /// id), in that order, each now due only at `lease_until`, in one statement. Until the
    /// lease ends no other node's claim takes them; delivered, a message is removed,
    /// failed, postponed, and one whose node died comes due again when its lease ends.
    /// Each comes with the time it was due at, as the redb backend gives it.
    ///
    /// `FOR UPDATE SKIP LOCKED` makes concurrent claims take disjoint messages, and a
    /// message another claim pushed forward after this statement's snapshot is read again
    /// and no longer matches. It takes no writer lock: the claim checks no rule across
    /// tables, and every node polls each second, so taking the lock would make idle polls
    /// queue behind sign-ins. A locking CTE is never inlined, so the rows locked are
    /// exactly the rows updated.
    pub async fn claim_due_mails(
        &self,
        now: UnixSeconds,
        lease_until: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.connection().await?;
        let statement = client
            .prepare_cached(
                "WITH due AS (SELECT id, next_attempt_at AS was_due FROM mail_queue \
                 WHERE next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2 \
                 FOR UPDATE SKIP LOCKED) \
                 UPDATE mail_queue SET next_attempt_at = $3 FROM due \
                 WHERE mail_queue.id = due.id \
                 RETURNING mail_queue.id, to_address, subject, text_body, html_body, \
                 attempts, next_attempt_at, due.was_due",
            )
            .await?;
        let mut claimed = Vec::new();
        for row in client
            .query(&statement, &[&now, &limit, &lease_until])
            .await?
        {
            let mut queued = queued_mail_from_row(&row)?;
            queued.next_attempt_at = row.try_get(7)?;
            claimed.push(queued);
        }
        claimed.sort_by_key(|queued| (queued.next_attempt_at, queued.id));
        Ok(claimed)
    }

    /// How many messages wait in the queue, due or postponed.
    pub async fn queued_mail_count(&self) -> Result<u64, StoreError> {
        let client = self.connection().await?;
        let statement = client
            .prepare_cached("SELECT count(*) FROM mail_queue")
            .await?;
        unsigned_from_sql(client.query_one(&statement, &[]).await?.try_get(0)?, "mail")
    }

    /// Removes a message from the queue (delivered, or given up).
    pub async fn remove_mail(&self, id: u64) -> Result<(), StoreError> {
        // An id past `bigint` names no message: nothing to remove, as in the redb backend.
        let Ok(id) = i64::try_from(id) else {
            return Ok(());
        };
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached("DELETE FROM mail_queue WHERE id = $1")
            .await?;
        transaction.execute(&statement, &[&id]).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub async fn postpone_mail(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at: UnixSeconds,
    ) -> Result<(), StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(());
        };
        let attempts = i32::try_from(attempts).map_err(|_| StoreError::CorruptRecord("mail"))?;
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        let statement = transaction
            .prepare_cached(
                "UPDATE mail_queue SET attempts = $2, next_attempt_at = $3 WHERE id = $1",
            )
            .await?;
        transaction
            .execute(&statement, &[&id, &attempts, &next_attempt_at])
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}

/// A message from a row of `id, to_address, subject, text_body, html_body, attempts,
/// next_attempt_at`.
pub(super) fn queued_mail_from_row(row: &tokio_postgres::Row) -> Result<QueuedMail, StoreError> {
    Ok(QueuedMail {
        id: unsigned_from_sql(row.try_get(0)?, "mail")?,
        mail: OutgoingMail {
            to: row.try_get(1)?,
            subject: row.try_get(2)?,
            text: Secret::new(row.try_get(3)?),
            html: Secret::new(row.try_get(4)?),
        },
        attempts: u32::try_from(row.try_get::<_, i32>(5)?)
            .map_err(|_| StoreError::CorruptRecord("mail"))?,
        next_attempt_at: row.try_get(6)?,
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres_backend::test_support::{NOW, fresh_store};

    fn mail_to(to: &str, subject: &str) -> OutgoingMail {
        OutgoingMail {
            to: to.to_owned(),
            subject: subject.to_owned(),
            text: Secret::new(format!("text of {subject}")),
            html: Secret::new(format!("<p>{subject}</p>")),
        }
    }

    async fn enqueue_now(store: &PostgresStore, mail: &OutgoingMail, now: UnixSeconds) {
        let mut client = store.connection().await.unwrap();
        let transaction = begin_write(&mut client).await.unwrap();
        enqueue(&transaction, mail, now).await.unwrap();
        transaction.commit().await.unwrap();
    }

    fn subjects(mails: &[QueuedMail]) -> Vec<&str> {
        mails
            .iter()
            .map(|queued| queued.mail.subject.as_str())
            .collect()
    }

    #[tokio::test]
    async fn due_mails_come_oldest_first_up_to_the_limit_and_postponed_ones_wait() {
        let store = fresh_store().await;
        assert_eq!(store.queued_mail_count().await.unwrap(), 0);
        assert!(store.due_mails(NOW, 10).await.unwrap().is_empty());
        enqueue_now(&store, &mail_to("a@example.com", "first"), NOW).await;
        enqueue_now(&store, &mail_to("b@example.com", "second"), NOW + 5).await;
        enqueue_now(&store, &mail_to("c@example.com", "third"), NOW).await;
        assert_eq!(store.queued_mail_count().await.unwrap(), 3);

        let due = store.due_mails(NOW, 10).await.unwrap();
        assert_eq!(subjects(&due), vec!["first", "third"]);
        let first = &due[0];
        assert_eq!(first.mail.to, "a@example.com");
        assert_eq!(first.mail.text.expose_secret(), "text of first");
        assert_eq!(first.mail.html.expose_secret(), "<p>first</p>");
        assert_eq!((first.attempts, first.next_attempt_at), (0, NOW));
        assert_eq!(
            subjects(&store.due_mails(NOW + 5, 10).await.unwrap()),
            vec!["first", "second", "third"]
        );
        assert_eq!(
            subjects(&store.due_mails(NOW + 5, 2).await.unwrap()),
            vec!["first", "second"]
        );
        // As the redb backend: the first due message is taken before the limit is looked at.
        assert_eq!(
            subjects(&store.due_mails(NOW + 5, 0).await.unwrap()),
            vec!["first"]
        );

        store.postpone_mail(first.id, 1, NOW + 60).await.unwrap();
        assert_eq!(
            subjects(&store.due_mails(NOW + 5, 10).await.unwrap()),
            vec!["second", "third"]
        );
        let later = store.due_mails(NOW + 60, 10).await.unwrap();
        assert_eq!(subjects(&later), vec!["first", "second", "third"]);
        assert_eq!((later[0].attempts, later[0].next_attempt_at), (1, NOW + 60));
        // Unknown ids change nothing.
        store.postpone_mail(9_999, 1, NOW).await.unwrap();
        store.postpone_mail(u64::MAX, 1, NOW).await.unwrap();
        store.remove_mail(9_999).await.unwrap();
        store.remove_mail(u64::MAX).await.unwrap();
        assert_eq!(store.queued_mail_count().await.unwrap(), 3);

        store.remove_mail(first.id).await.unwrap();
        assert_eq!(store.queued_mail_count().await.unwrap(), 2);
        assert_eq!(
            subjects(&store.due_mails(NOW + 60, 10).await.unwrap()),
            vec!["second", "third"]
        );
    }

    #[tokio::test]
    async fn a_claim_takes_the_longest_due_messages_once_until_their_lease_ends() {
        let store = fresh_store().await;
        assert!(
            store
                .claim_due_mails(NOW, NOW + 60, 10)
                .await
                .unwrap()
                .is_empty()
        );
        enqueue_now(&store, &mail_to("first@example.com", "first"), NOW).await;
        enqueue_now(&store, &mail_to("later@example.com", "later"), NOW + 5).await;
        enqueue_now(&store, &mail_to("second@example.com", "second"), NOW).await;
        enqueue_now(
            &store,
            &mail_to("earliest@example.com", "earliest"),
            NOW - 10,
        )
        .await;
        assert!(
            store
                .claim_due_mails(NOW, NOW + 60, 0)
                .await
                .unwrap()
                .is_empty()
        );

        let claimed = store.claim_due_mails(NOW, NOW + 60, 2).await.unwrap();
        assert_eq!(subjects(&claimed), ["earliest", "first"]);
        assert_eq!(claimed[1].mail.to, "first@example.com");
        assert_eq!(claimed[1].mail.text.expose_secret(), "text of first");
        assert_eq!((claimed[1].attempts, claimed[1].next_attempt_at), (0, NOW));
        // Claimed messages are taken by no other claim until their lease ends.
        assert_eq!(
            subjects(&store.claim_due_mails(NOW + 5, NOW + 65, 10).await.unwrap()),
            ["second", "later"]
        );
        assert!(
            store
                .claim_due_mails(NOW + 59, NOW + 119, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // A failure postpones its message, a delivery removes it; the rest come due again
        // when their lease ends, as after a node that died.
        store
            .postpone_mail(claimed[0].id, 1, NOW + 100)
            .await
            .unwrap();
        store.remove_mail(claimed[1].id).await.unwrap();
        let after_the_lease = store
            .claim_due_mails(NOW + 65, NOW + 125, 10)
            .await
            .unwrap();
        // Due at the same time: by id, the order they were queued in.
        assert_eq!(subjects(&after_the_lease), ["later", "second"]);
        let after_the_wait = store
            .claim_due_mails(NOW + 200, NOW + 260, 10)
            .await
            .unwrap();
        assert_eq!(subjects(&after_the_wait), ["earliest", "later", "second"]);
        assert_eq!(
            (
                after_the_wait[0].attempts,
                after_the_wait[0].next_attempt_at
            ),
            (1, NOW + 100)
        );
        assert_eq!(store.queued_mail_count().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn concurrent_claims_of_many_nodes_take_each_message_exactly_once() {
        let url = crate::store::postgres_backend::test_support::fresh_database().await;
        let mut nodes = Vec::new();
        for _ in 0..4 {
            nodes.push(PostgresStore::open(&url, 4).await.unwrap());
        }
        const MAILS: usize = 300;
        for index in 0..MAILS {
            enqueue_now(
                &nodes[0],
                &mail_to(
                    &format!("user{index}@example.com"),
                    &format!("mail {index}"),
                ),
                NOW,
            )
            .await;
        }
        // Each node claims small batches, several at a time, until the queue is empty.
        let mut claimers = tokio::task::JoinSet::new();
        for node in &nodes {
            for _ in 0..3 {
                let node = node.clone();
                claimers.spawn(async move {
                    let mut taken = Vec::new();
                    loop {
                        let batch = node.claim_due_mails(NOW, NOW + 60, 7).await.unwrap();
                        if batch.is_empty() {
                            return taken;
                        }
                        taken.extend(batch.into_iter().map(|queued| queued.id));
                    }
                });
            }
        }
        let mut every_claim = Vec::new();
        while let Some(taken) = claimers.join_next().await {
            every_claim.extend(taken.unwrap());
        }
        let claimed_count = every_claim.len();
        every_claim.sort_unstable();
        every_claim.dedup();
        assert_eq!(
            every_claim.len(),
            claimed_count,
            "a message was claimed twice"
        );
        assert_eq!(claimed_count, MAILS);
        assert!(
            nodes[1]
                .claim_due_mails(NOW + 59, NOW + 119, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn mail_to_deleted_addresses_is_dropped() {
        let store = fresh_store().await;
        enqueue_now(&store, &mail_to("a@example.com", "one"), NOW).await;
        enqueue_now(&store, &mail_to("b@example.com", "two"), NOW).await;
        enqueue_now(&store, &mail_to("a@example.com", "three"), NOW).await;
        let client = store.connection().await.unwrap();
        remove_mail_to(&client, &[]).await.unwrap();
        assert_eq!(store.queued_mail_count().await.unwrap(), 3);
        remove_mail_to(&client, &["a@example.com".to_owned()])
            .await
            .unwrap();
        assert_eq!(
            subjects(&store.due_mails(NOW, 10).await.unwrap()),
            vec!["two"]
        );
    }
}
