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
                due.push(QueuedMail {
                    id: id.value(),
                    mail: OutgoingMail {
                        to: record.to,
                        subject: record.subject,
                        text: Secret::new(record.text),
                        html: Secret::new(record.html),
                    },
                    attempts: record.attempts,
                    next_attempt_at: record.next_attempt_at,
                });
                if due.len() >= limit {
                    break;
                }
            }
        }
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
