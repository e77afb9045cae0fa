//! Seeding a store through the library's `Store` API, before the server holds the file (redb
//! lets one process hold it) or into a fresh PostgreSQL database: sign-in users, token users
//! with their sessions, and the session-bound API tokens and signed tokens the token checks
//! cycle over, each made by the library's own functions, exactly as a sign-in makes them.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use latchkey::Config;
use latchkey::app::token_issuer;
use latchkey::auth::signed_token::{KeyRing, generate_signing_key};
use latchkey::auth::{
    ClientInfo, generate_api_token, new_session, session_api_token, session_token_claims,
    token_hash,
};
use latchkey::model::email_address::EmailAddress;
use latchkey::model::{
    NewUser, PasswordHashString, PermissionSet, Role, Session, SessionKind, Status, User, UserId,
    now_unix_seconds,
};
use latchkey::store::Store;

use crate::BenchResult;
use crate::report::thousands;

/// The tokens' issuer: fixed, so that tokens signed here verify whatever port the server has.
pub const PUBLIC_URL: &str = "http://bench.invalid";
pub const PASSWORD: &str = "correct horse battery staple";
/// Users that sign in during (a) and (d); they share one password and one stored hash.
pub const SIGN_IN_USERS: usize = 16;
/// Distinct sessions (and their bound API tokens) the token checks cycle over.
pub const TOKEN_SESSIONS: u64 = 10_000;
/// The small store: its users hold the token sessions, 5 each (as 5,000,000 / 1,000,000).
pub const SMALL_USERS: u64 = 2_000;
/// Rows per `insert_sessions` transaction.
pub const SEED_BATCH: usize = 100_000;
/// redb's page cache while seeding (the server itself runs with its configured cache).
const SEED_CACHE_BYTES: usize = 512 << 20;
/// Connections while seeding a PostgreSQL database (one transaction at a time needs one).
const SEED_POSTGRES_POOL_SIZE: usize = 2;

pub struct SeedPlan {
    pub label: &'static str,
    pub users: u64,
    pub sessions: u64,
    pub sign_in_users: usize,
}

pub struct Seeded {
    pub sign_in_emails: Vec<String>,
    /// Signed session tokens of the token sessions, in cycling order.
    pub session_tokens: Vec<String>,
    /// The API tokens bound to the same sessions.
    pub api_tokens: Vec<String>,
    /// The distinct users those sessions belong to.
    pub token_users: usize,
    pub timings: Vec<(String, Duration)>,
}

fn new_user(email: &str, password_hash: &PasswordHashString) -> BenchResult<NewUser> {
    let address = EmailAddress::parse(email).map_err(|_| format!("bad email {email}"))?;
    Ok(NewUser {
        password_hash: Some(password_hash.clone()),
        email_verified: true,
        ..NewUser::new(address, Role::User, Status::Active)
    })
}

/// Where a seeding writes: the redb file in a data directory, or a PostgreSQL database.
#[derive(Clone, Copy)]
pub enum SeedTarget<'a> {
    /// `latchkey.redb` in this directory.
    Redb(&'a Path),
    /// The (empty) database at this URL; the store's migrations make its tables.
    Postgres(&'a str),
}

/// Users, sessions and API tokens in transactions of `SEED_BATCH` rows; one session in every
/// `sessions / TOKEN_SESSIONS` gets a bound API token and a signed token, signed with the
/// store's key and the issuer `config` gives, exactly as the server signs them.
/// The store's functions are async: the seeding runs on a runtime of its own.
pub fn seed_store(
    target: SeedTarget<'_>,
    plan: &SeedPlan,
    password_hash: &PasswordHashString,
    config: &Config,
) -> BenchResult<Seeded> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(seed_store_on_a_runtime(target, plan, password_hash, config))
}

async fn seed_store_on_a_runtime(
    target: SeedTarget<'_>,
    plan: &SeedPlan,
    password_hash: &PasswordHashString,
    config: &Config,
) -> BenchResult<Seeded> {
    let label = plan.label;
    let store = match target {
        SeedTarget::Redb(directory) => {
            Store::open_redb(&directory.join("latchkey.redb"), SEED_CACHE_BYTES)?
        }
        SeedTarget::Postgres(url) => Store::open_postgres(url, SEED_POSTGRES_POOL_SIZE).await?,
    };
    let issuer = token_issuer(config, &store);
    let now = now_unix_seconds();
    let mut timings = Vec::new();
    let key = generate_signing_key(now)?;
    store.insert_active_signing_key(&key).await?;
    let key_ring = KeyRing::from_stored(&store.signing_keys().await?)?;

    let mut sign_in_emails = Vec::with_capacity(plan.sign_in_users);
    for index in 0..plan.sign_in_users {
        let email = format!("sign-in-{index}@bench.invalid");
        store
            .insert_user(new_user(&email, password_hash)?, now)
            .await?;
        sign_in_emails.push(email);
    }

    let started = Instant::now();
    let user_count = usize::try_from(plan.users)?;
    let mut user_ids: Vec<UserId> = Vec::with_capacity(user_count);
    let mut template: Option<User> = None;
    let mut last_report = Instant::now();
    let mut batch = Vec::with_capacity(SEED_BATCH.min(user_count));
    let mut done: u64 = 0;
    for index in 0..plan.users {
        batch.push(new_user(
            &format!("user-{index}@{label}.bench.invalid"),
            password_hash,
        )?);
        if batch.len() == SEED_BATCH || index + 1 == plan.users {
            let inserted = store.insert_users(std::mem::take(&mut batch), now).await?;
            done += inserted.len() as u64;
            user_ids.extend(inserted.iter().map(|user| user.id));
            if template.is_none() {
                template = inserted.into_iter().next();
            }
        }
        if last_report.elapsed() >= Duration::from_secs(15) && done > 0 {
            last_report = Instant::now();
            let elapsed = started.elapsed().as_secs_f64();
            let left = (plan.users - done) as f64 * elapsed / done as f64;
            progress!(
                "seed {label}: {done} of {} users ({:.0}/s, about {left:.0} s left)",
                plan.users,
                done as f64 / elapsed
            );
        }
    }
    let mut template = template.ok_or("no users to seed")?;
    let users_took = started.elapsed();
    progress!(
        "seed {label}: {} users in {:.1} s ({:.0}/s, in transactions of {SEED_BATCH})",
        plan.users,
        users_took.as_secs_f64(),
        plan.users as f64 / users_took.as_secs_f64().max(1e-9)
    );
    timings.push((
        format!(
            "{} users, `insert_users` in transactions of {}",
            thousands(plan.users),
            thousands(SEED_BATCH as u64)
        ),
        users_took,
    ));

    let started = Instant::now();
    let expire = now.saturating_add(i64::try_from(config.session.long_term_seconds)?);
    let client = ClientInfo {
        remote_ip: "127.0.0.1".to_owned(),
        user_agent: "latchkey-bench".to_owned(),
    };
    let token_sessions = TOKEN_SESSIONS.min(plan.sessions);
    let stride = (plan.sessions / token_sessions.max(1)).max(1);
    let capacity = usize::try_from(token_sessions)?;
    let mut session_tokens = Vec::with_capacity(capacity);
    let mut api_tokens = Vec::with_capacity(capacity);
    let mut bound_tokens = Vec::with_capacity(capacity);
    let mut token_users = HashSet::new();
    let mut batch: Vec<Session> =
        Vec::with_capacity(SEED_BATCH.min(usize::try_from(plan.sessions)?));
    let mut last_report = Instant::now();
    for index in 0..plan.sessions {
        let user_index = usize::try_from(index % plan.users)?;
        template.id = user_ids[user_index];
        let is_token_session = index % stride == 0 && index / stride < token_sessions;
        let api_token = if is_token_session {
            Some(generate_api_token()?)
        } else {
            None
        };
        let session = new_session(
            &template,
            SessionKind::SignIn,
            now,
            expire,
            &client,
            PermissionSet::empty(),
            api_token.as_deref().map(token_hash),
        );
        if let Some(api_token) = api_token {
            let claims =
                session_token_claims(&issuer, &template, None, &session, serde_json::Map::new());
            session_tokens.push(key_ring.sign(&claims)?);
            token_users.insert(template.id);
            bound_tokens.push(session_api_token(&session, &api_token));
            api_tokens.push(api_token);
        }
        batch.push(session);
        if batch.len() >= SEED_BATCH {
            store.insert_sessions(&batch).await?;
            batch.clear();
            if last_report.elapsed() >= Duration::from_secs(15) {
                last_report = Instant::now();
                progress!(
                    "seed {label}: {} of {} sessions ({:.0}/s)",
                    index + 1,
                    plan.sessions,
                    (index + 1) as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
    }
    if !batch.is_empty() {
        store.insert_sessions(&batch).await?;
    }
    let sessions_took = started.elapsed();
    progress!(
        "seed {label}: {} sessions in {:.1} s",
        plan.sessions,
        sessions_took.as_secs_f64()
    );
    timings.push((
        format!(
            "{} sessions, `insert_sessions` in transactions of {}",
            thousands(plan.sessions),
            thousands(SEED_BATCH as u64)
        ),
        sessions_took,
    ));

    let started = Instant::now();
    for chunk in bound_tokens.chunks(SEED_BATCH) {
        store.insert_api_tokens(chunk).await?;
    }
    let tokens_took = started.elapsed();
    timings.push((
        format!(
            "{} session-bound API tokens, `insert_api_tokens` in one transaction",
            thousands(bound_tokens.len() as u64)
        ),
        tokens_took,
    ));
    progress!(
        "seed {label}: {} API tokens in {:.1} s",
        bound_tokens.len(),
        tokens_took.as_secs_f64()
    );
    drop(store);
    Ok(Seeded {
        token_users: token_users.len(),
        sign_in_emails,
        session_tokens,
        api_tokens,
        timings,
    })
}

pub fn seed_note(plan: &SeedPlan, seeded: &Seeded) -> String {
    format!(
        "{} store: {} sign-in users and {} users, {} sessions; the {} token sessions belong to \
         {} users",
        plan.label,
        plan.sign_in_users,
        thousands(plan.users),
        thousands(plan.sessions),
        thousands(seeded.session_tokens.len() as u64),
        thousands(seeded.token_users as u64)
    )
}
