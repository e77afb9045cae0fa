//! Email delivery: the only module that knows lettre. A background worker claims due
//! messages from the store's queue (so that of many nodes on one database, one sends each)
//! and delivers them through the configured transport (an outbox directory of .eml files,
//! or SMTP), removing each once delivered and otherwise trying again with a growing wait. The API's answers never depend on delivery, and
//! addresses are masked in every log line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::app::App;
use crate::config::{EmailConfig, EmailTransport, SmtpTls};
use crate::model::{OutgoingMail, QueuedMail};

const POLL_INTERVAL: Duration = Duration::from_secs(1);
const BATCH: usize = 32;
const LONGEST_WAIT_SECONDS: i64 = 600;
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How a delivery attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The transport took the message; it left the queue.
    Delivered,
    /// The attempt failed; the message waits for another.
    Failed,
    /// The attempt failed and was the last one allowed (`[email] max_attempts`); the
    /// message left the queue undelivered.
    GivenUp,
}

impl DeliveryOutcome {
    pub const ALL: [DeliveryOutcome; 3] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Failed,
        DeliveryOutcome::GivenUp,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Failed => "failed",
            DeliveryOutcome::GivenUp => "given_up",
        }
    }
}

/// Delivery attempts so far, by outcome, for the metrics.
#[derive(Debug, Default)]
pub struct DeliveryCounts {
    counts: [AtomicU64; DeliveryOutcome::ALL.len()],
}

impl DeliveryCounts {
    pub fn record(&self, outcome: DeliveryOutcome) {
        self.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self, outcome: DeliveryOutcome) -> u64 {
        self.counts[outcome as usize].load(Ordering::Relaxed)
    }
}

/// Whether `from` is a usable From header (checked when the configuration loads).
pub fn is_valid_from(from: &str) -> bool {
    from.parse::<Mailbox>().is_ok()
}

/// `a***@example.com`: enough to tell messages apart in a log, not to harvest addresses.
pub fn mask_address(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

enum Transport {
    Outbox(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

fn smtp_transport(config: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match config.smtp_tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host),
        SmtpTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.smtp_host)
                .map_err(|error| error.to_string())?
        }
        SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.smtp_host)
            .map_err(|error| error.to_string())?,
    };
    let mut builder = builder.port(config.smtp_port).timeout(Some(SMTP_TIMEOUT));
    if let Some(username) = &config.smtp_username {
        builder = builder.credentials(Credentials::new(
            username.clone(),
            config
                .smtp_password
                .as_ref()
                .map(|password| password.expose_secret().clone())
                .unwrap_or_default(),
        ));
    }
    Ok(builder.build())
}

/// The longest line SMTP carries (RFC 5321 4.5.3.1.6), without its CRLF.
const SMTP_LINE_LIMIT_BYTES: usize = 998;

/// A body part in 7bit or 8bit, so that a line (a link above all) stays whole. lettre would
/// fold any line of 76 bytes or more with quoted-printable, which breaks a link for every
/// reader that does not decode it; RFC 2045 allows 7bit and 8bit lines up to 998 bytes.
/// Text that does not fit those rules (a longer line, a bare CR, a NUL) is left to lettre.
fn unfolded_part(content_type: ContentType, text: &str) -> SinglePart {
    let fits = !text.contains(['\r', '\0'])
        && text
            .split('\n')
            .all(|line| line.len() <= SMTP_LINE_LIMIT_BYTES);
    let body = if fits {
        let encoding = if text.is_ascii() {
            ContentTransferEncoding::SevenBit
        } else {
            ContentTransferEncoding::EightBit
        };
        Body::dangerous_pre_encoded(text.replace('\n', "\r\n").into_bytes(), encoding)
    } else {
        Body::new(text.to_owned())
    };
    SinglePart::builder().header(content_type).body(body)
}

/// `<random@domain of From>`: a Message-ID that mail clients thread and deduplicate by.
fn new_message_id(from: &Mailbox) -> String {
    format!(
        "<{}@{}>",
        uuid::Uuid::new_v4().simple(),
        from.email.domain()
    )
}

/// The whole message: From, To, Subject, Date, Message-ID and a text and an HTML part.
fn build_message(from: &str, mail: &OutgoingMail) -> Result<Message, String> {
    let from: Mailbox = from.parse().map_err(|error| format!("from: {error}"))?;
    // A bare address, never a mailbox: a display name or angle brackets in `to` would let
    // the header and the envelope name an address other than the stored one.
    let to: Address = mail.to.parse().map_err(|error| format!("to: {error}"))?;
    let to = Mailbox::new(None, to);
    Message::builder()
        .message_id(Some(new_message_id(&from)))
        .date_now()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .multipart(
            MultiPart::alternative()
                .singlepart(unfolded_part(
                    ContentType::TEXT_PLAIN,
                    mail.text.expose_secret(),
                ))
                .singlepart(unfolded_part(
                    ContentType::TEXT_HTML,
                    mail.html.expose_secret(),
                )),
        )
        .map_err(|error| error.to_string())
}

async fn deliver(transport: &Transport, from: &str, queued: &QueuedMail) -> Result<String, String> {
    let message = build_message(from, &queued.mail)?;
    match transport {
        Transport::Outbox(directory) => {
            let path = directory.join(format!("{:010}.eml", queued.id));
            let bytes = message.formatted();
            let written_path = path.clone();
            tokio::task::spawn_blocking(move || write_private_file(&written_path, &bytes))
                .await
                .map_err(|error| error.to_string())??;
            Ok(format!("written to {}", path.display()))
        }
        Transport::Smtp(smtp) => smtp
            .send(message)
            .await
            .map(|response| format!("accepted by the SMTP server ({})", response.code()))
            .map_err(|error| error.to_string()),
    }
}

/// Writes the message beside its name first and renames it into place once it is on disk,
/// so that whatever reads the outbox (a person's tooling, the tests) never sees half a mail.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let partial = path.with_extension("eml.partial");
    let describe = |error: std::io::Error| format!("{}: {error}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(describe)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(describe)
}

/// Delivers queued mail until the task is dropped. It claims due messages every second (a
/// postponed message comes due, or another process or node queued one), and at once when a
/// request has queued mail (`App::wake_mail_worker`). A claim is a lease
/// (`CLAIM_LEASE_SECONDS`): no other node sends those messages while this one does, and if
/// this node dies mid-send they come due again when it ends.
pub async fn deliver_forever(app: Arc<App>) {
    let config = app.config.email.clone();
    let transport = match config.transport {
        EmailTransport::Outbox => {
            let directory = app.config.store.data_dir.join("outbox");
            if let Err(error) = std::fs::create_dir_all(&directory) {
                tracing::error!(%error, "cannot create the outbox; mail stays queued");
                return;
            }
            Transport::Outbox(directory)
        }
        EmailTransport::Smtp => match smtp_transport(&config) {
            Ok(smtp) => Transport::Smtp(smtp),
            Err(error) => {
                tracing::error!(%error, "cannot set up SMTP; mail stays queued");
                return;
            }
        },
    };
    loop {
        let handed_back = deliver_one_claim(&app, &config, &transport).await;
        if handed_back {
            // Messages whose lease ran short went back to the queue, due now: claim again.
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            () = app.mail_queued() => {}
        }
    }
}

/// How long a claim keeps its messages from every other node's claims.
pub const CLAIM_LEASE_SECONDS: i64 = 60;

/// The longest one delivery may take before it counts as failed: past `SMTP_TIMEOUT` per
/// command, a whole SMTP exchange could otherwise outlast the lease.
const DELIVERY_TIME_LIMIT: Duration = Duration::from_secs(20);

/// A delivery starts only while its lease has this long left: the time limit, and 10
/// seconds for the nodes' clocks to disagree, so another node's claim never takes a
/// message this one is still sending.
const LEASE_LEFT_TO_START_SECONDS: i64 = 30;

/// Claims a batch of due messages and delivers them in turn, removing each one delivered
/// (or given up) and postponing each one that failed. Those whose turn comes too late in the
/// lease go back to the queue, due at once, without counting an attempt; returns whether
/// any did.
async fn deliver_one_claim(app: &App, config: &EmailConfig, transport: &Transport) -> bool {
    let store = &app.store;
    let claimed_at = app.clock.now_unix_seconds();
    let lease_until = claimed_at + CLAIM_LEASE_SECONDS;
    let claimed = match store.claim_due_mails(claimed_at, lease_until, BATCH).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(%error, "cannot claim mail from the queue");
            return false;
        }
    };
    let mut handed_back = false;
    for queued in claimed {
        let now = app.clock.now_unix_seconds();
        if lease_until - now < LEASE_LEFT_TO_START_SECONDS {
            handed_back = true;
            if let Err(error) = store.postpone_mail(queued.id, queued.attempts, now).await {
                tracing::warn!(%error, "cannot hand mail back to the queue");
            }
            continue;
        }
        let outcome = match tokio::time::timeout(
            DELIVERY_TIME_LIMIT,
            deliver(transport, &config.from, &queued),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "no answer within {} seconds",
                DELIVERY_TIME_LIMIT.as_secs()
            )),
        };
        let to = mask_address(&queued.mail.to);
        let update = match outcome {
            Ok(how) => {
                app.mail_deliveries.record(DeliveryOutcome::Delivered);
                tracing::info!(to, subject = queued.mail.subject, how, "mail delivered");
                store.remove_mail(queued.id).await
            }
            Err(error) => {
                let attempts = queued.attempts.saturating_add(1);
                if attempts >= config.max_attempts {
                    app.mail_deliveries.record(DeliveryOutcome::GivenUp);
                    tracing::error!(to, attempts, %error, "mail given up");
                    store.remove_mail(queued.id).await
                } else {
                    app.mail_deliveries.record(DeliveryOutcome::Failed);
                    let wait = 2i64.saturating_pow(attempts).min(LONGEST_WAIT_SECONDS);
                    tracing::warn!(to, attempts, retry_in_seconds = wait, %error, "mail delivery failed");
                    let retry_at = app.clock.now_unix_seconds() + wait;
                    store.postpone_mail(queued.id, attempts, retry_at).await
                }
            }
        };
        if let Err(error) = update {
            tracing::warn!(%error, "cannot update the mail queue");
        }
    }
    handed_back
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Secret;

    #[test]
    fn addresses_are_masked_and_from_headers_checked() {
        assert_eq!(mask_address("alice@example.com"), "a***@example.com");
        assert_eq!(mask_address("nonsense"), "***");
        assert!(is_valid_from("Latchkey <auth@example.com>"));
        assert!(!is_valid_from("not an address"));
    }

    #[test]
    fn messages_carry_a_message_id_and_a_date_and_keep_links_on_one_line() {
        let link = format!("https://app.example.com/reset?token={}", "x".repeat(120));
        let mail = OutgoingMail {
            to: "ünïcode@example.com".to_owned(),
            subject: "Reset your password".to_owned(),
            text: Secret::new(format!(
                "Hello Zoë,\n\nTo choose a new password, open this link:\n{link}\n"
            )),
            html: Secret::new(format!(
                "<p>Hello Zoë,</p><p><a href=\"{link}\">{link}</a></p>"
            )),
        };
        let formatted = build_message("Latchkey <auth@example.org>", &mail)
            .unwrap()
            .formatted();
        let text = String::from_utf8(formatted).unwrap();
        let header_lines: Vec<&str> = text.split("\r\n").collect();
        assert!(
            header_lines
                .iter()
                .any(|line| line.starts_with("Message-ID: <") && line.ends_with("@example.org>")),
            "{text}"
        );
        assert!(
            header_lines.iter().any(|line| line.starts_with("Date: ")),
            "{text}"
        );
        assert!(header_lines.contains(&link.as_str()), "{text}");
        assert!(!text.contains("quoted-printable"), "{text}");
    }

    fn mail_to(to: &str) -> OutgoingMail {
        OutgoingMail {
            to: to.to_owned(),
            subject: "s".to_owned(),
            text: Secret::new("t".to_owned()),
            html: Secret::new("<p>t</p>".to_owned()),
        }
    }

    #[test]
    fn mail_goes_only_to_a_bare_address_exactly_as_stored() {
        let from = "Latchkey <auth@example.com>";
        for wrapped in [
            "<alice@example.com>",
            "Alice <alice@example.com>",
            "\"Bob\" <alice@example.com>",
        ] {
            assert!(build_message(from, &mail_to(wrapped)).is_err(), "{wrapped}");
        }
        let message = build_message(from, &mail_to("alice@example.com")).unwrap();
        let recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(recipients, ["alice@example.com"]);
    }
}
