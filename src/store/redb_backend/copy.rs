//! The redb side of `store::copy`: reading every table's rows as domain values in one read
//! transaction, and writing copied rows with the index rows each table keeps beside it
//! (`email_userid` for a user, `expire_sessionid` for a session, `maker_made` for what a token
//! made...), so a copied file is the file the same writes would have made. The tests check
//! that a copy, redb to redb and through PostgreSQL and back, holds every table of
//! `ALL_TABLES` row for row.

use redb::{ReadTransaction, ReadableTable, TableDefinition, TableHandle};

use crate::model::oauth_browser::OAuthStateHash;
use crate::model::passkey::{PasskeyChallengeId, PasskeyId};
use crate::model::{EmailToken, OAuthIdentity, PasswordHashString, SessionId, SignUpAttempt};
use crate::store::StoreError;
use crate::store::copy::{
    CopiedEmailToken, CopiedRecoveryCodes, CopiedRows, CopiedTable, CopyItem, CopySender,
    StoreFacts, target_stopped,
};
use crate::store::redb_backend::RedbStore;
use crate::store::redb_backend::api_tokens::insert_api_token;
use crate::store::redb_backend::mail_queue::queued_mail_from_record;
use crate::store::redb_backend::record::{
    AttemptRecord, EmailTokenRecord, IdentityRecord, MailRecord, MfaTokenRecord,
    OAuthBrowserStateRecord, PasskeyChallengeRecord, PasskeyRecord, PendingTotpRecord,
    RECORD_VERSION, RecoveryCodesRecord, SigningKeyRecord, TotpRecord, decode, decode_api_token,
    decode_session, decode_user, encode, encode_user,
};
use crate::store::redb_backend::sessions::insert_session;
use crate::store::redb_backend::signing_keys::stored_key;
use crate::store::redb_backend::signup::note_unproved_sign_up;
use crate::store::redb_backend::tables::{
    CHALLENGEID_PASSKEYCHALLENGE, CREDENTIALID_PASSKEYID, EMAIL_USERID, EXPIRE_OAUTHSTATEHASH,
    EXPIRE_PASSKEYCHALLENGEID, KEYID_SIGNINGKEY, MAILID_MAIL, META, META_NEXT_MAIL_ID,
    META_NEXT_USER_ID, META_STORE_ID, META_TEXT, MFATOKENHASH_MFATOKEN, PARENTID_CHILDID,
    PASSKEYID_PASSKEY, PROVIDERSUBJECT_IDENTITY, SESSIONID_SESSION, STATEHASH_OAUTHBROWSERSTATE,
    TOKENHASH_APITOKEN, TOKENHASH_EMAILTOKEN, USERID_EMAILTOKENHASH, USERID_PASSKEYID,
    USERID_PENDINGTOTP, USERID_PROVIDERSUBJECT, USERID_RECOVERYCODES, USERID_TOTP, USERID_USER,
};

/// What `created` a copied set of recovery codes gets when its source did not keep it
/// (PostgreSQL): nothing reads it.
const UNKNOWN_RECOVERY_CODES_CREATED: i64 = 0;

impl RedbStore {
    /// The tables holding rows, but `meta` and `meta_text`, which every file has from its
    /// first open.
    pub(in crate::store) fn tables_holding_rows(&self) -> Result<Vec<String>, StoreError> {
        let transaction = self.begin_read()?;
        let mut holding = Vec::new();
        for table in transaction.list_tables()? {
            let name = table.name().to_owned();
            if name == META.name() || name == META_TEXT.name() {
                continue;
            }
            if !redb::ReadableTableMetadata::is_empty(&transaction.open_untyped_table(table)?)? {
                holding.push(name);
            }
        }
        Ok(holding)
    }

    /// Sends every row of every table in `CopiedTable::ALL`'s order, `batch_rows` at a time,
    /// then the store's facts, all from one read transaction. Runs on a blocking thread.
    pub(in crate::store) fn send_every_row(
        &self,
        sender: &CopySender,
        batch_rows: usize,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_read()?;
        let mut batch = Batch {
            transaction: &transaction,
            sender,
            batch_rows,
        };
        for table in CopiedTable::ALL {
            match table {
                CopiedTable::Users => batch.send(USERID_USER, CopiedRows::Users, |id, bytes| {
                    decode_user(bytes, id)
                })?,
                CopiedTable::Sessions => {
                    batch.send(SESSIONID_SESSION, CopiedRows::Sessions, |id, bytes| {
                        decode_session(bytes, SessionId(id))
                    })?
                }
                CopiedTable::ApiTokens => {
                    batch.send(TOKENHASH_APITOKEN, CopiedRows::ApiTokens, |hash, bytes| {
                        decode_api_token(bytes, *hash)
                    })?
                }
                CopiedTable::SigningKeys => batch.send(
                    KEYID_SIGNINGKEY,
                    CopiedRows::SigningKeys,
                    |key_id, bytes| {
                        stored_key(key_id, &decode::<SigningKeyRecord>(bytes, "signing key")?)
                    },
                )?,
                CopiedTable::EmailTokens => batch.send(
                    TOKENHASH_EMAILTOKEN,
                    CopiedRows::EmailTokens,
                    |hash, bytes| email_token_from_record(*hash, decode(bytes, "email token")?),
                )?,
                CopiedTable::MailQueue => {
                    batch.send(MAILID_MAIL, CopiedRows::MailQueue, |id, bytes| {
                        Ok(queued_mail_from_record(id, decode(bytes, "mail")?))
                    })?
                }
                CopiedTable::OAuthIdentities => batch.send(
                    PROVIDERSUBJECT_IDENTITY,
                    CopiedRows::OAuthIdentities,
                    |(provider, subject), bytes| {
                        let record: IdentityRecord = decode(bytes, "oauth identity")?;
                        Ok(OAuthIdentity {
                            provider: provider.to_owned(),
                            subject: subject.to_owned(),
                            user_id: record.user_id,
                            linked: record.linked,
                        })
                    },
                )?,
                CopiedTable::ActiveTotp => {
                    batch.send(USERID_TOTP, CopiedRows::ActiveTotp, |user_id, bytes| {
                        decode::<TotpRecord>(bytes, "totp")?.into_totp(user_id)
                    })?
                }
                CopiedTable::PendingTotp => batch.send(
                    USERID_PENDINGTOTP,
                    CopiedRows::PendingTotp,
                    |user_id, bytes| {
                        decode::<PendingTotpRecord>(bytes, "pending totp")?.into_pending(user_id)
                    },
                )?,
                CopiedTable::RecoveryCodes => batch.send(
                    USERID_RECOVERYCODES,
                    CopiedRows::RecoveryCodes,
                    |user_id, bytes| {
                        let record: RecoveryCodesRecord = decode(bytes, "recovery codes")?;
                        Ok(CopiedRecoveryCodes {
                            user_id,
                            codes: record.to_set()?,
                            created: Some(record.created),
                        })
                    },
                )?,
                CopiedTable::MfaTokens => batch.send(
                    MFATOKENHASH_MFATOKEN,
                    CopiedRows::MfaTokens,
                    |hash, bytes| decode::<MfaTokenRecord>(bytes, "mfa token")?.into_token(*hash),
                )?,
                CopiedTable::Passkeys => {
                    batch.send(PASSKEYID_PASSKEY, CopiedRows::Passkeys, |id, bytes| {
                        decode::<PasskeyRecord>(bytes, "passkey")?.into_passkey(PasskeyId(id))
                    })?
                }
                CopiedTable::PasskeyChallenges => batch.send(
                    CHALLENGEID_PASSKEYCHALLENGE,
                    CopiedRows::PasskeyChallenges,
                    |id, bytes| {
                        decode::<PasskeyChallengeRecord>(bytes, "passkey challenge")?
                            .into_challenge(PasskeyChallengeId(id))
                    },
                )?,
                CopiedTable::OAuthBrowserStates => batch.send(
                    STATEHASH_OAUTHBROWSERSTATE,
                    CopiedRows::OAuthBrowserStates,
                    |hash, bytes| {
                        let hash: [u8; 32] = hash
                            .try_into()
                            .map_err(|_| StoreError::CorruptRecord("oauth browser state"))?;
                        let record: OAuthBrowserStateRecord = decode(bytes, "oauth browser state")?;
                        Ok((OAuthStateHash(hash), record.into_state()?))
                    },
                )?,
            }
        }
        let facts = {
            let meta = transaction.open_table(META)?;
            let counter = |name| -> Result<u64, StoreError> {
                Ok(meta.get(name)?.map_or(1, |guard| guard.value()))
            };
            let store_id = transaction
                .open_table(META_TEXT)?
                .get(META_STORE_ID)?
                .map_or_else(
                    || self.store_id().to_owned(),
                    |guard| guard.value().to_owned(),
                );
            StoreFacts {
                store_id,
                next_user_id: counter(META_NEXT_USER_ID)?,
                next_mail_id: counter(META_NEXT_MAIL_ID)?,
            }
        };
        sender
            .blocking_send(CopyItem::Facts(facts))
            .map_err(|_| target_stopped())
    }

    /// Writes one batch of copied rows, with their index rows, in one transaction; answers
    /// how many it wrote (all: a file has no foreign keys to refuse one).
    pub(in crate::store) fn write_copied_rows(&self, rows: &CopiedRows) -> Result<u64, StoreError> {
        let transaction = self.begin_write()?;
        match rows {
            CopiedRows::Users(users) => {
                let mut records = transaction.open_table(USERID_USER)?;
                let mut emails = transaction.open_table(EMAIL_USERID)?;
                let mut children = transaction.open_table(PARENTID_CHILDID)?;
                for user in users {
                    records.insert(user.id, encode_user(user).as_slice())?;
                    emails.insert(user.normalized_email.as_str(), user.id)?;
                    if let Some(parent_id) = user.parent_id {
                        children.insert((parent_id, user.id), ())?;
                    }
                    note_unproved_sign_up(&transaction, user)?;
                }
            }
            CopiedRows::Sessions(sessions) => {
                for session in sessions {
                    insert_session(&transaction, session)?;
                }
            }
            CopiedRows::ApiTokens(tokens) => {
                for token in tokens {
                    insert_api_token(&transaction, token)?;
                }
            }
            CopiedRows::SigningKeys(keys) => {
                let mut table = transaction.open_table(KEYID_SIGNINGKEY)?;
                for key in keys {
                    let record = SigningKeyRecord {
                        v: RECORD_VERSION,
                        secret_key_hex: base16ct::lower::encode_string(
                            key.secret_key_bytes.expose_secret(),
                        ),
                        status: key.status,
                        created: key.created,
                        retired_at: key.retired_at,
                        activates_at: key.activates_at,
                    };
                    table.insert(key.key_id.as_str(), encode(&record).as_slice())?;
                }
            }
            CopiedRows::EmailTokens(tokens) => {
                let mut table = transaction.open_table(TOKENHASH_EMAILTOKEN)?;
                let mut by_user = transaction.open_table(USERID_EMAILTOKENHASH)?;
                for copied in tokens {
                    let token = &copied.token;
                    let record = EmailTokenRecord {
                        v: RECORD_VERSION,
                        purpose: token.purpose,
                        user_id: token.user_id,
                        expires_at: token.expires_at,
                        used: copied.used,
                        attempt: token.attempt.as_ref().map(|attempt| AttemptRecord {
                            password_hash: attempt.password_hash.expose_secret().to_owned(),
                            first_name: attempt.first_name.clone(),
                            last_name: attempt.last_name.clone(),
                        }),
                    };
                    table.insert(&token.hash, encode(&record).as_slice())?;
                    by_user.insert((token.user_id, &token.hash), ())?;
                }
            }
            CopiedRows::MailQueue(mails) => {
                let mut table = transaction.open_table(MAILID_MAIL)?;
                for queued in mails {
                    let record = MailRecord {
                        v: RECORD_VERSION,
                        to: queued.mail.to.clone(),
                        subject: queued.mail.subject.clone(),
                        text: queued.mail.text.expose_secret().clone(),
                        html: queued.mail.html.expose_secret().clone(),
                        attempts: queued.attempts,
                        next_attempt_at: queued.next_attempt_at,
                    };
                    table.insert(queued.id, encode(&record).as_slice())?;
                }
            }
            CopiedRows::OAuthIdentities(identities) => {
                let mut table = transaction.open_table(PROVIDERSUBJECT_IDENTITY)?;
                let mut by_user = transaction.open_table(USERID_PROVIDERSUBJECT)?;
                for identity in identities {
                    let record = IdentityRecord {
                        v: RECORD_VERSION,
                        user_id: identity.user_id,
                        linked: identity.linked,
                    };
                    let key = (identity.provider.as_str(), identity.subject.as_str());
                    table.insert(key, encode(&record).as_slice())?;
                    by_user.insert((identity.user_id, key.0, key.1), ())?;
                }
            }
            CopiedRows::ActiveTotp(totps) => {
                let mut table = transaction.open_table(USERID_TOTP)?;
                for totp in totps {
                    table.insert(
                        totp.user_id,
                        encode(&TotpRecord::from_totp(totp)).as_slice(),
                    )?;
                }
            }
            CopiedRows::PendingTotp(enrolments) => {
                let mut table = transaction.open_table(USERID_PENDINGTOTP)?;
                for pending in enrolments {
                    table.insert(
                        pending.user_id,
                        encode(&PendingTotpRecord::from_pending(pending)).as_slice(),
                    )?;
                }
            }
            CopiedRows::RecoveryCodes(sets) => {
                let mut table = transaction.open_table(USERID_RECOVERYCODES)?;
                for set in sets {
                    let created = set.created.unwrap_or(UNKNOWN_RECOVERY_CODES_CREATED);
                    table.insert(
                        set.user_id,
                        encode(&RecoveryCodesRecord::from_set(&set.codes, created)).as_slice(),
                    )?;
                }
            }
            CopiedRows::MfaTokens(tokens) => {
                let mut table = transaction.open_table(MFATOKENHASH_MFATOKEN)?;
                for token in tokens {
                    table.insert(
                        &token.hash,
                        encode(&MfaTokenRecord::from_token(token)).as_slice(),
                    )?;
                }
            }
            CopiedRows::Passkeys(passkeys) => {
                let mut table = transaction.open_table(PASSKEYID_PASSKEY)?;
                let mut by_credential = transaction.open_table(CREDENTIALID_PASSKEYID)?;
                let mut by_user = transaction.open_table(USERID_PASSKEYID)?;
                for passkey in passkeys {
                    table.insert(
                        passkey.id.0,
                        encode(&PasskeyRecord::from_passkey(passkey)).as_slice(),
                    )?;
                    by_credential.insert(passkey.credential_id.as_slice(), passkey.id.0)?;
                    by_user.insert((passkey.user_id, passkey.id.0), ())?;
                }
            }
            CopiedRows::PasskeyChallenges(challenges) => {
                let mut table = transaction.open_table(CHALLENGEID_PASSKEYCHALLENGE)?;
                let mut by_expiry = transaction.open_table(EXPIRE_PASSKEYCHALLENGEID)?;
                for challenge in challenges {
                    table.insert(
                        challenge.id.0,
                        encode(&PasskeyChallengeRecord::from_challenge(challenge)).as_slice(),
                    )?;
                    by_expiry.insert((challenge.expires_at, challenge.id.0), ())?;
                }
            }
            CopiedRows::OAuthBrowserStates(states) => {
                let mut table = transaction.open_table(STATEHASH_OAUTHBROWSERSTATE)?;
                let mut by_expiry = transaction.open_table(EXPIRE_OAUTHSTATEHASH)?;
                for (hash, state) in states {
                    table.insert(
                        hash.0.as_slice(),
                        encode(&OAuthBrowserStateRecord::from_state(state)).as_slice(),
                    )?;
                    by_expiry.insert((state.expires_at, hash.0.as_slice()), ())?;
                }
            }
        }
        transaction.commit()?;
        Ok(rows.len() as u64)
    }

    /// Sets the store id and the counters of user and mail ids.
    pub(in crate::store) fn write_store_facts(&self, facts: &StoreFacts) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        transaction
            .open_table(META_TEXT)?
            .insert(META_STORE_ID, facts.store_id.as_str())?;
        let mut meta = transaction.open_table(META)?;
        meta.insert(META_NEXT_USER_ID, facts.next_user_id)?;
        meta.insert(META_NEXT_MAIL_ID, facts.next_mail_id)?;
        drop(meta);
        transaction.commit()?;
        Ok(())
    }
}

fn email_token_from_record(
    hash: [u8; 32],
    record: EmailTokenRecord,
) -> Result<CopiedEmailToken, StoreError> {
    Ok(CopiedEmailToken {
        token: EmailToken {
            hash,
            purpose: record.purpose,
            user_id: record.user_id,
            expires_at: record.expires_at,
            attempt: record.attempt.map(|attempt| SignUpAttempt {
                password_hash: PasswordHashString::new(attempt.password_hash),
                first_name: attempt.first_name,
                last_name: attempt.last_name,
            }),
        },
        used: record.used,
    })
}

/// A source's reading: one table at a time, in batches, into the channel.
struct Batch<'a> {
    transaction: &'a ReadTransaction,
    sender: &'a CopySender,
    batch_rows: usize,
}

impl Batch<'_> {
    /// Reads every row of `definition` in key order, converts each with `convert` and sends
    /// them `batch_rows` at a time, each batch wrapped by `into_rows`.
    fn send<K: redb::Key + 'static, V: redb::Value + 'static, T>(
        &mut self,
        definition: TableDefinition<K, V>,
        into_rows: fn(Vec<T>) -> CopiedRows,
        mut convert: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> Result<T, StoreError>,
    ) -> Result<(), StoreError> {
        let table = self.transaction.open_table(definition)?;
        let mut rows = Vec::with_capacity(self.batch_rows);
        for entry in table.iter()? {
            let (key, value) = entry?;
            rows.push(convert(key.value(), value.value())?);
            if rows.len() >= self.batch_rows {
                let full = std::mem::replace(&mut rows, Vec::with_capacity(self.batch_rows));
                self.deliver(into_rows(full))?;
            }
        }
        if !rows.is_empty() {
            self.deliver(into_rows(rows))?;
        }
        Ok(())
    }

    fn deliver(&self, rows: CopiedRows) -> Result<(), StoreError> {
        self.sender
            .blocking_send(CopyItem::Rows(rows))
            .map_err(|_| target_stopped())
    }
}

/// Every table's rows as bytes, by the table's name.
#[cfg(test)]
pub(in crate::store) type TableBytes =
    std::collections::BTreeMap<String, crate::store::redb_backend::tables::RowBytes>;

/// What the copy's tests (here and in `postgres_backend::copy`) make and compare.
#[cfg(test)]
impl RedbStore {
    /// Every table of `ALL_TABLES` as its rows' bytes, by name.
    pub(in crate::store) fn every_table_as_bytes(&self) -> TableBytes {
        let transaction = self.begin_read().unwrap();
        crate::store::redb_backend::tables::ALL_TABLES
            .iter()
            .map(|table| {
                (
                    table.name().to_owned(),
                    table.rows_as_bytes(&transaction).unwrap(),
                )
            })
            .collect()
    }

    /// Asserts that this file holds `expected` (`every_table_as_bytes` of another), table
    /// by table, naming the first table that differs.
    #[track_caller]
    pub(in crate::store) fn assert_holds(found: &TableBytes, expected: &TableBytes) {
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (name, rows) in expected {
            let copied = &found[name];
            assert!(
                copied == rows,
                "table {name} differs: {} rows copied, {} expected",
                copied.len(),
                rows.len()
            );
        }
    }

    /// `every_table_as_bytes`, with what PostgreSQL does not keep (the recovery codes'
    /// `created`) set as a copy from PostgreSQL sets it.
    pub(in crate::store) fn every_table_as_postgres_keeps_it(&self) -> TableBytes {
        let mut tables = self.every_table_as_bytes();
        for (_, value) in tables
            .get_mut(USERID_RECOVERYCODES.name())
            .unwrap()
            .iter_mut()
        {
            let record: RecoveryCodesRecord = decode(value, "recovery codes").unwrap();
            let set = record.to_set().unwrap();
            *value = encode(&RecoveryCodesRecord::from_set(
                &set,
                UNKNOWN_RECOVERY_CODES_CREATED,
            ));
        }
        tables
    }

    /// Rows in every table of `ALL_TABLES`, made by the store's own writes: a user with a
    /// sub-user, a session from before prefixed ids, a sign-in with its bound API token, a
    /// token that made another token and a minted session, a pending sign-up (with its link
    /// and mail), a used reset link, a linked identity, active and pending TOTP with
    /// recovery codes, an mfa-token, a passkey and open ceremonies, a browser OAuth sign-in,
    /// an active and a next signing key. Answers the parent user.
    pub(in crate::store) fn fill_every_table_for_tests(&self) -> crate::model::User {
        use crate::model::email_address::EmailAddress;
        use crate::model::oauth_browser::OAuthBrowserState;
        use crate::model::passkey::{Passkey, PasskeyChallenge, PasskeyChallengeKind};
        use crate::model::second_factor::{
            FirstFactor, MfaToken, PendingTotp, RecoveryCodeSet, TotpSecret,
        };
        use crate::model::{
            ApiToken, EmailTokenPurpose, NewUser, OutgoingMail, PermissionSet, Role, Secret,
            Session, SessionKind, Status, TokenMaker, User,
        };
        use crate::store::redb_backend::test_support::{
            NOW, add_user, live_session, standalone_token, test_signing_key,
        };
        use crate::store::{LinkToIssue, NewSignIn, Requester, TokenAction};

        let requester = |user: &User| Requester {
            user_id: user.id,
            credential_version: user.credential_version,
            credential: None,
            now: NOW,
        };
        let mail = |user: &User| OutgoingMail {
            to: user.normalized_email.clone(),
            subject: "Hello".to_owned(),
            text: Secret::new("text".to_owned()),
            html: Secret::new("<p>html</p>".to_owned()),
        };
        self.insert_active_signing_key(&test_signing_key(1))
            .unwrap();
        self.insert_next_signing_key(&test_signing_key(2), NOW + 3600, NOW)
            .unwrap();

        let parent = add_user(self, "parent@example.com");
        let sub_user = NewUser {
            parent_id: Some(parent.id),
            first_name: Some("Sub".to_owned()),
            permissions: PermissionSet::from_bits(3),
            ..NewUser::new(
                EmailAddress::parse("Sub@Example.com").unwrap(),
                Role::Sub,
                Status::Active,
            )
        };
        self.insert_user(sub_user, NOW).unwrap();

        // A pending sign-up: its user, its link with the attempt's password, its mail.
        let pending = NewUser {
            password_hash: Some(PasswordHashString::new("$argon2id$pending".to_owned())),
            first_name: Some("Pen".to_owned()),
            permissions: PermissionSet::empty(),
            ..NewUser::new(
                EmailAddress::parse("pending@example.com").unwrap(),
                Role::User,
                Status::Pending,
            )
        };
        self.sign_up(pending, [3; 32], NOW + 3600, mail, mail, NOW)
            .unwrap();
        // A reset link, used.
        let reset = [4; 32];
        assert!(
            self.issue_email_token(
                &parent.normalized_email,
                reset,
                |user| Some(LinkToIssue {
                    purpose: EmailTokenPurpose::ResetPassword,
                    expires_at: NOW + 600,
                    mail: mail(user),
                }),
                NOW,
            )
            .unwrap()
        );
        let parent = self
            .consume_email_token(
                &reset,
                EmailTokenPurpose::ResetPassword,
                TokenAction::SetPassword(PasswordHashString::new("$argon2id$reset".to_owned())),
                NOW,
            )
            .unwrap()
            .unwrap();

        // A session from before prefixed ids, with its row in `userid_sessionid`.
        self.insert_sessions(&[live_session(SessionId::new_random(), parent.id)])
            .unwrap();
        // A sign-in with its bound API token.
        let signed_in = SessionId::new_for_user(parent.id);
        let bound_hash = [11; 32];
        self.record_sign_in(&NewSignIn {
            refuse_if_second_factor_held: false,
            session: Session {
                api_token_hash: Some(bound_hash),
                user_agent: "curl/8".to_owned(),
                ..live_session(signed_in, parent.id)
            },
            requester: requester(&parent),
            max_sessions_per_user: 100,
            api_token: Some(ApiToken {
                session_id: Some(signed_in),
                ..standalone_token(parent.id, 11, None)
            }),
            end_other_sessions: false,
            replacement_password_hash: None,
        })
        .unwrap();
        // A standalone token that made another token (expiring) and a minted session.
        let maker = standalone_token(parent.id, 1, None);
        self.insert_api_token(&maker).unwrap();
        self.insert_api_token(&ApiToken {
            expires_at: Some(NOW + 60),
            ..standalone_token(parent.id, 2, Some(TokenMaker::ApiToken(maker.hash)))
        })
        .unwrap();
        self.insert_sessions(&[Session {
            kind: SessionKind::Minted,
            granted_permissions: PermissionSet::from_bits(1),
            made_by: Some(TokenMaker::ApiToken(maker.hash)),
            ..live_session(SessionId::new_for_user(parent.id), parent.id)
        }])
        .unwrap();

        self.link_identity("provider", "subject", parent.id, |_| true, NOW)
            .unwrap();

        // Active TOTP with recovery codes, a pending enrolment of another user, an mfa-token.
        let pending_totp = |user: &User, byte| PendingTotp {
            user_id: user.id,
            secret: TotpSecret::new([byte; 20]),
            created: NOW,
            expires_at: NOW + 600,
        };
        self.start_totp_enrolment(&pending_totp(&parent, 1), &requester(&parent))
            .unwrap();
        self.activate_totp(
            &TotpSecret::new([1; 20]),
            7,
            &RecoveryCodeSet {
                salt: [3; 16],
                hashes: vec![[4; 32], [5; 32]],
            },
            &requester(&parent),
        )
        .unwrap();
        let enrolling = add_user(self, "enrolling@example.com");
        self.start_totp_enrolment(&pending_totp(&enrolling, 2), &requester(&enrolling))
            .unwrap();
        self.insert_mfa_token(&MfaToken {
            hash: [5; 32],
            user_id: parent.id,
            credential_version: parent.credential_version,
            first_factor: FirstFactor::OAuth {
                provider: "provider".to_owned(),
            },
            long_term_token: true,
            logout_other: false,
            remote_ip: "127.0.0.1".to_owned(),
            user_agent: String::new(),
            replacement_password_hash: Some(PasswordHashString::new("$argon2id$re".to_owned())),
            created: NOW,
            expires_at: NOW + 300,
            wrong_codes: 1,
        })
        .unwrap();

        // A registered passkey, and ceremonies still open (one of them discoverable).
        let challenge = |kind, user_id| PasskeyChallenge {
            id: PasskeyChallengeId::new_random(),
            kind,
            user_id,
            user_handle: user_id.map(|_| 1),
            expires_at: NOW + 300,
            state: b"{}".to_vec(),
        };
        let registration = challenge(PasskeyChallengeKind::Registration, Some(parent.id));
        self.insert_passkey_challenge(&registration, 10, NOW)
            .unwrap();
        let passkey = Passkey {
            id: PasskeyId::new_random(),
            user_id: parent.id,
            credential_id: vec![1, 2, 3],
            user_handle: 1,
            name: "Key".to_owned(),
            created: NOW,
            last_used: Some(NOW + 1),
            credential: b"{\"counter\":1}".to_vec(),
        };
        self.finish_passkey_registration(registration.id, &passkey, 20, &requester(&parent))
            .unwrap();
        for (kind, user_id) in [
            (PasskeyChallengeKind::UserAssertion, Some(parent.id)),
            (PasskeyChallengeKind::DiscoverableSignIn, None),
        ] {
            self.insert_passkey_challenge(&challenge(kind, user_id), 10, NOW)
                .unwrap();
        }

        self.insert_oauth_browser_state(
            OAuthStateHash([9; 32]),
            &OAuthBrowserState {
                provider: "provider".to_owned(),
                browser_binding_hash: [8; 32],
                nonce: Secret::new("nonce".to_owned()),
                pkce_verifier: Secret::new("verifier".to_owned()),
                return_url: Some("https://app.example.com/".to_owned()),
                expires_at: NOW + 600,
            },
            10,
            NOW,
        )
        .unwrap();
        parent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::copy::{CopyError, CopyProgress, copy_store};
    use crate::store::redb_backend::tables::ALL_TABLES;
    use crate::store::{Store, StoreError};

    fn redb_store(directory: &tempfile::TempDir, name: &str) -> (Store, RedbStore) {
        let path = directory.path().join(name);
        let store = RedbStore::open(&path, 1024 * 1024).unwrap();
        (Store::wrapping_redb(store.clone()), store)
    }

    /// The fixture leaves no table of `ALL_TABLES` empty, and a copy to a new file, in
    /// batches of two rows, holds every table row for row, store id and counters included:
    /// a table added to `ALL_TABLES` and not to the copy fails here.
    #[tokio::test]
    async fn a_copy_holds_every_table_of_the_file_row_for_row() {
        let directory = tempfile::tempdir().unwrap();
        let (source, source_file) = redb_store(&directory, "source.redb");
        source_file.fill_every_table_for_tests();
        let before = source_file.every_table_as_bytes();
        assert_eq!(before.len(), ALL_TABLES.len());
        for (name, rows) in &before {
            assert!(!rows.is_empty(), "the fixture leaves {name} empty: fill it");
        }
        let (target, target_file) = redb_store(&directory, "target.redb");
        assert_ne!(target.store_id(), source.store_id());
        let mut heard = Vec::new();
        let summary = copy_store(&source, &target, 2, |progress: &CopyProgress| {
            heard.push(*progress)
        })
        .await
        .unwrap();
        RedbStore::assert_holds(&target_file.every_table_as_bytes(), &before);
        assert_eq!(summary.store_id, source.store_id());
        let finished: Vec<_> = heard.iter().filter(|progress| progress.finished).collect();
        assert_eq!(finished.len(), CopiedTable::ALL.len());
        let users = finished[0];
        assert_eq!((users.table, users.rows_copied), (CopiedTable::Users, 4));
        // Sessions came in batches of two, each reported.
        assert!(
            heard
                .iter()
                .filter(|progress| progress.table == CopiedTable::Sessions && !progress.finished)
                .count()
                >= 2
        );
        assert!(heard.iter().all(|progress| progress.rows_skipped == 0));
        // What the source held is what a copy of the copy holds.
        drop(target);
        drop(target_file);
        let reopened = RedbStore::open(&directory.path().join("target.redb"), 1024 * 1024).unwrap();
        assert_eq!(reopened.store_id(), source.store_id());
    }

    /// A target holding any row is refused before anything is written; a target holding
    /// only what every new file holds is empty.
    #[tokio::test]
    async fn a_target_holding_rows_is_refused_and_left_as_it_was() {
        let directory = tempfile::tempdir().unwrap();
        let (source, source_file) = redb_store(&directory, "source.redb");
        source_file.fill_every_table_for_tests();
        let (target, target_file) = redb_store(&directory, "target.redb");
        assert!(target_file.tables_holding_rows().unwrap().is_empty());
        crate::store::redb_backend::test_support::add_user(&target_file, "here@example.com");
        let before = target_file.every_table_as_bytes();
        let refusal = copy_store(&source, &target, 2, |_| {}).await;
        match refusal {
            Err(CopyError::TargetNotEmpty { tables }) => {
                assert!(tables.contains(&"userid_user".to_owned()), "{tables:?}");
                assert!(tables.contains(&"email_userid".to_owned()), "{tables:?}");
            }
            other => panic!("{other:?}"),
        }
        RedbStore::assert_holds(&target_file.every_table_as_bytes(), &before);
    }

    /// The source is one snapshot: what is written to it while the copy runs is not in the
    /// copy, and nothing of the copy is torn.
    #[tokio::test]
    async fn the_source_is_read_in_one_snapshot() {
        let directory = tempfile::tempdir().unwrap();
        let (source, source_file) = redb_store(&directory, "source.redb");
        let parent = source_file.fill_every_table_for_tests();
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        let reading = {
            let source = source.clone();
            tokio::spawn(async move { source.send_every_row(sender, 1).await })
        };
        let first = receiver.recv().await.unwrap();
        assert!(matches!(first, CopyItem::Rows(CopiedRows::Users(_))));
        // Written while the copy reads: a user, and the end of every session of the parent.
        crate::store::redb_backend::test_support::add_user(&source_file, "late@example.com");
        source_file.end_all_sessions_of_user(parent.id).unwrap();
        let mut users = 1;
        let mut sessions = 0;
        while let Some(item) = receiver.recv().await {
            match item {
                CopyItem::Rows(CopiedRows::Users(batch)) => users += batch.len(),
                CopyItem::Rows(CopiedRows::Sessions(batch)) => sessions += batch.len(),
                _ => {}
            }
        }
        reading.await.unwrap().unwrap();
        assert_eq!((users, sessions), (4, 3));
    }

    /// A source row that does not decode stops the copy, as the source's failure.
    #[tokio::test]
    async fn a_corrupt_source_row_stops_the_copy_as_the_source_s_failure() {
        let directory = tempfile::tempdir().unwrap();
        let (source, source_file) = redb_store(&directory, "source.redb");
        source_file.fill_every_table_for_tests();
        {
            let transaction = source_file.begin_write().unwrap();
            transaction
                .open_table(MAILID_MAIL)
                .unwrap()
                .insert(99, b"not json".as_slice())
                .unwrap();
            transaction.commit().unwrap();
        }
        let (target, _target_file) = redb_store(&directory, "target.redb");
        match copy_store(&source, &target, 2, |_| {}).await {
            Err(CopyError::Source(StoreError::CorruptRecord("mail"))) => {}
            other => panic!("{other:?}"),
        }
    }
}
