//! Email delivery: the only module that knows lettre. A background worker takes due
//! messages from the store's queue and delivers them through the configured transport (an
//! outbox directory of .eml files, or SMTP), removing each once delivered and otherwise
//! trying again with a growing wait. The API's answers never depend on delivery, and
//! addresses are masked in every log line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::app::App;
use crate::config::{EmailConfig, EmailTransport, SmtpTls};
use crate::model::{OutgoingMail, QueuedMail, now_unix_seconds};

const POLL_INTERVAL: Duration = Duration::from_secs(1);
const BATCH: usize = 32;
const LONGEST_WAIT_SECONDS: i64 = 600;
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

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
            config.smtp_password.clone().unwrap_or_default(),
        ));
    }
    Ok(builder.build())
}

fn build_message(from: &str, mail: &OutgoingMail) -> Result<Message, String> {
    let from: Mailbox = from.parse().map_err(|error| format!("from: {error}"))?;
    // A bare address, never a mailbox: a display name or angle brackets in `to` would let
    // the header and the envelope name an address other than the stored one.
    let to: Address = mail.to.parse().map_err(|error| format!("to: {error}"))?;
    let to = Mailbox::new(None, to);
    Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
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

fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("{}: {error}", path.display()))
}

/// Delivers queued mail until the task is dropped.
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
        let now = now_unix_seconds();
        let store = app.store.clone();
        let due = tokio::task::spawn_blocking(move || store.due_mails(now, BATCH)).await;
        let due = match due {
            Ok(Ok(due)) => due,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read the mail queue");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        for queued in due {
            let outcome = deliver(&transport, &config.from, &queued).await;
            let to = mask_address(&queued.mail.to);
            let store = app.store.clone();
            let update = match outcome {
                Ok(how) => {
                    tracing::info!(to, subject = queued.mail.subject, how, "mail delivered");
                    tokio::task::spawn_blocking(move || store.remove_mail(queued.id)).await
                }
                Err(error) => {
                    let attempts = queued.attempts.saturating_add(1);
                    if attempts >= config.max_attempts {
                        tracing::error!(to, attempts, %error, "mail given up");
                        tokio::task::spawn_blocking(move || store.remove_mail(queued.id)).await
                    } else {
                        let wait = 2i64.saturating_pow(attempts).min(LONGEST_WAIT_SECONDS);
                        tracing::warn!(to, attempts, retry_in_seconds = wait, %error, "mail delivery failed");
                        tokio::task::spawn_blocking(move || {
                            store.postpone_mail(queued.id, attempts, now_unix_seconds() + wait)
                        })
                        .await
                    }
                }
            };
            if let Ok(Err(error)) = update {
                tracing::warn!(%error, "cannot update the mail queue");
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_and_from_headers_checked() {
        assert_eq!(mask_address("alice@example.com"), "a***@example.com");
        assert_eq!(mask_address("nonsense"), "***");
        assert!(is_valid_from("Latchkey <auth@example.com>"));
        assert!(!is_valid_from("not an address"));
    }

    fn mail_to(to: &str) -> OutgoingMail {
        OutgoingMail {
            to: to.to_owned(),
            subject: "s".to_owned(),
            text: "t".to_owned(),
            html: "<p>t</p>".to_owned(),
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
