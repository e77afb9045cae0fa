//! The mail queue: messages that changes queue in their own transaction, and the delivery
//! worker's reads and updates.

use std::collections::HashSet;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::model::{OutgoingMail, QueuedMail, Secret, UnixSeconds};
use crate::store::StoreError;
use crate::store::redb_backend::RedbStore;
use crate::store::redb_backend::record::{MailRecord, RECORD_VERSION, decode, encode};
use crate::store::redb_backend::tables::{MAILID_MAIL, META, META_NEXT_MAIL_ID};

impl RedbStore {
    /// Messages due for a delivery attempt, oldest first.
    pub fn due_mails(&self, now: UnixSeconds, limit: usize) -> Result<Vec<QueuedMail>, StoreError> {
        let transaction = self.begin_read()?;
        let table = transaction.open_table(MAILID_MAIL)?;
        let mut due = Vec::new();
        for entry in table.iter()? {
            let (id, bytes) = entry?;
            let record: MailRecord = decode(bytes.value(), "mail")?;
            if record.next_attempt_at <= now {
                due.push(queued_mail_from_record(id.value(), record));
                if due.len() >= limit {
                    break;
                }
            }
        }
        Ok(due)
    }

    /// Up to `limit` due messages for this process to send: those due longest (then by id),
    /// in that order. A read: the one process that holds the file runs the one mail worker,
    /// so no other claim can take them, and nothing needs pushing to `lease_until` (which
    /// only the PostgreSQL backend, shared by many nodes, needs). So a message whose sender
    /// died is due again at once when the server restarts, and a poll costs no write.
    pub fn claim_due_mails(
        &self,
        now: UnixSeconds,
        _lease_until: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut due = self.due_mails(now, usize::MAX)?;
        due.sort_by_key(|queued| (queued.next_attempt_at, queued.id));
        due.truncate(limit);
        Ok(due)
    }

    /// How many messages wait in the queue, due or postponed.
    pub fn queued_mail_count(&self) -> Result<u64, StoreError> {
        let transaction = self.begin_read()?;
        Ok(transaction.open_table(MAILID_MAIL)?.len()?)
    }

    /// Removes a message from the queue (delivered, or given up).
    pub fn remove_mail(&self, id: u64) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        transaction.open_table(MAILID_MAIL)?.remove(id)?;
        transaction.commit()?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn postpone_mail(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at: UnixSeconds,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        {
            let mut table = transaction.open_table(MAILID_MAIL)?;
            let record = table
                .get(id)?
                .map(|bytes| decode::<MailRecord>(bytes.value(), "mail"))
                .transpose()?;
            if let Some(mut record) = record {
                record.attempts = attempts;
                record.next_attempt_at = next_attempt_at;
                table.insert(id, encode(&record).as_slice())?;
            }
        }
        transaction.commit()?;
        Ok(())
    }
}

/// Queues a message, due at once, inside the change that causes it.
pub(super) fn enqueue(
    transaction: &WriteTransaction,
    mail: &OutgoingMail,
    now: UnixSeconds,
) -> Result<(), StoreError> {
    let mut meta = transaction.open_table(META)?;
    let id = meta
        .get(META_NEXT_MAIL_ID)?
        .map_or(1, |guard| guard.value());
    meta.insert(META_NEXT_MAIL_ID, id + 1)?;
    let record = MailRecord {
        v: RECORD_VERSION,
        to: mail.to.clone(),
        subject: mail.subject.clone(),
        text: mail.text.expose_secret().clone(),
        html: mail.html.expose_secret().clone(),
        attempts: 0,
        next_attempt_at: now,
    };
    transaction
        .open_table(MAILID_MAIL)?
        .insert(id, encode(&record).as_slice())?;
    Ok(())
}

/// Drops every queued message to one of `addresses` (their accounts are being deleted).
pub(super) fn remove_mail_to(
    transaction: &WriteTransaction,
    addresses: &HashSet<String>,
) -> Result<(), StoreError> {
    if addresses.is_empty() {
        return Ok(());
    }
    let mut mails = transaction.open_table(MAILID_MAIL)?;
    let mut queued_to_them = Vec::new();
    for entry in mails.iter()? {
        let (id, bytes) = entry?;
        let record: MailRecord = decode(bytes.value(), "mail")?;
        if addresses.contains(&record.to) {
            queued_to_them.push(id.value());
        }
    }
    for id in queued_to_them {
        mails.remove(id)?;
    }
    Ok(())
}

/// The queued message `id` as its stored record holds it.
pub(super) fn queued_mail_from_record(id: u64, record: MailRecord) -> QueuedMail {
    QueuedMail {
        id,
        mail: OutgoingMail {
            to: record.to,
            subject: record.subject,
            text: Secret::new(record.text),
            html: Secret::new(record.html),
        },
        attempts: record.attempts,
        next_attempt_at: record.next_attempt_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb_backend::test_support::open_store;

    const NOW: UnixSeconds = 1_750_000_000;

    fn enqueue_now(store: &RedbStore, subject: &str, now: UnixSeconds) {
        let transaction = store.begin_write().unwrap();
        let mail = OutgoingMail {
            to: format!("{subject}@example.com"),
            subject: subject.to_owned(),
            text: Secret::new(format!("text of {subject}")),
            html: Secret::new(format!("<p>{subject}</p>")),
        };
        enqueue(&transaction, &mail, now).unwrap();
        transaction.commit().unwrap();
    }

    fn subjects(mails: &[QueuedMail]) -> Vec<&str> {
        mails
            .iter()
            .map(|queued| queued.mail.subject.as_str())
            .collect()
    }

    #[test]
    fn a_claim_takes_the_longest_due_messages_and_leaves_them_to_the_one_worker() {
        let directory = tempfile::tempdir().unwrap();
        let store = open_store(&directory);
        assert!(store.claim_due_mails(NOW, NOW + 60, 10).unwrap().is_empty());
        enqueue_now(&store, "first", NOW);
        enqueue_now(&store, "later", NOW + 5);
        enqueue_now(&store, "second", NOW);
        enqueue_now(&store, "earliest", NOW - 10);
        assert!(store.claim_due_mails(NOW, NOW + 60, 0).unwrap().is_empty());

        let claimed = store.claim_due_mails(NOW, NOW + 60, 2).unwrap();
        assert_eq!(subjects(&claimed), ["earliest", "first"]);
        assert_eq!(claimed[1].mail.to, "first@example.com");
        assert_eq!(claimed[1].mail.text.expose_secret(), "text of first");
        assert_eq!((claimed[1].attempts, claimed[1].next_attempt_at), (0, NOW));
        // Nothing is pushed: a server killed mid-send finds its messages due at its restart.
        assert_eq!(
            subjects(&store.claim_due_mails(NOW + 5, NOW + 65, 10).unwrap()),
            ["earliest", "first", "second", "later"]
        );
        // A failure postpones its message, a delivery removes it.
        store.postpone_mail(claimed[0].id, 1, NOW + 100).unwrap();
        store.remove_mail(claimed[1].id).unwrap();
        assert_eq!(
            subjects(&store.claim_due_mails(NOW + 5, NOW + 65, 10).unwrap()),
            ["second", "later"]
        );
        let after_the_wait = store.claim_due_mails(NOW + 200, NOW + 260, 10).unwrap();
        assert_eq!(subjects(&after_the_wait), ["second", "later", "earliest"]);
        assert_eq!(after_the_wait[2].attempts, 1);
        assert_eq!(store.queued_mail_count().unwrap(), 3);
    }
}
