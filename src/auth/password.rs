//! Passwords: argon2id PHC strings, hashed and verified on a fixed pool of hasher threads.
//! The only module that knows argon2. Each hasher owns one memory buffer and reuses it for
//! every job while work keeps coming (a fresh 19 MiB allocation per hash leaves glibc holding
//! hundreds of MiB), and lets it go after a configurable idle spell so an idle server stays
//! small; a bounded queue sits in front of the pool, and a full queue is an immediate
//! `Overloaded`, never a wait. Token checks never touch this pool.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::auth::AuthError;
use crate::model::PASSWORD_MAX_CHARACTERS;
use crate::model::PasswordHashString;
use crate::model::Secret;

const SALT_BYTES: usize = 16;
const OUTPUT_BYTES: usize = 32;

/// A password in memory: never printed.
#[derive(Clone, Debug)]
pub struct Password(Secret<String>);

impl Password {
    pub fn new(text: String) -> Password {
        Password(Secret::new(text))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A password about to be set, checked against the one rule of every route that sets one
/// (sign-up, sub-user creation, a change, a reset): `[password] min_length` to 72 characters,
/// not the account's email address, and not the password it replaces. A refusal names the
/// field the password came in.
#[derive(Debug)]
pub struct NewPassword(Password);

impl NewPassword {
    /// Checks `password`, sent as `field`, for the account whose normalized address is
    /// `email`; `current` is the password it replaces, when the caller gave it.
    pub fn parse(
        app: &App,
        password: Password,
        field: &'static str,
        email: &str,
        current: Option<&Password>,
    ) -> Result<NewPassword, AuthError> {
        let min_length = app.config.password.min_length;
        NewPassword::parse_with_min_length(password, field, min_length, email, current)
    }

    fn parse_with_min_length(
        password: Password,
        field: &'static str,
        min_length: usize,
        email: &str,
        current: Option<&Password>,
    ) -> Result<NewPassword, AuthError> {
        let length = password.expose_secret().chars().count();
        if length < min_length || length > PASSWORD_MAX_CHARACTERS {
            return Err(AuthError::PasswordLength {
                field,
                min_length,
                max_length: PASSWORD_MAX_CHARACTERS,
            });
        }
        if password.expose_secret().trim().to_lowercase() == email.to_lowercase() {
            return Err(AuthError::InvalidField {
                field,
                message: "must differ from the email address",
            });
        }
        if current.is_some_and(|current| current.expose_secret() == password.expose_secret()) {
            return Err(AuthError::InvalidField {
                field,
                message: "must differ from the current password",
            });
        }
        Ok(NewPassword(password))
    }

    /// The checked password, for the hasher.
    pub fn into_password(self) -> Password {
        self.0
    }
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("every hasher is busy and the queue is full")]
    Overloaded,
    #[error("the hasher pool has stopped")]
    Stopped,
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

/// The outcome of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The stored hash used other parameters than the configured ones: re-hash it.
    pub needs_rehash: bool,
}

enum Job {
    Hash {
        password: Password,
        reply: tokio::sync::oneshot::Sender<Result<PasswordHashString, PasswordError>>,
    },
    Verify {
        password: Password,
        stored: PasswordHashString,
        /// The dummy hash, at the configured cost: verified against as well when `stored`
        /// cost less, so that an old hash answers no sooner than a current one.
        pad_with: PasswordHashString,
        reply: tokio::sync::oneshot::Sender<Result<Verification, PasswordError>>,
    },
}

/// The bounded job queue the hashers share. Each hasher waits on the condition variable
/// with its own timeout, so each can notice its own idle spell.
struct JobQueue {
    state: Mutex<QueueState>,
    job_arrived: Condvar,
    capacity: usize,
    /// argon2 work done so far, in memory blocks processed (memory cost × passes).
    block_passes: AtomicU64,
    /// Jobs (hashes and verifications) the hashers have finished.
    jobs_finished: AtomicU64,
}

struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

enum Taken {
    Job(Job),
    IdleTimeout,
    Closed,
}

impl JobQueue {
    /// The queue, even from a poisoned lock (the crate's one policy for std locks): a push or
    /// a pop is one step, so the queue stays whole whatever panicked, and refusing it would
    /// stop every hash for good.
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, job: Job) -> Result<(), PasswordError> {
        let mut state = self.lock();
        if state.closed {
            return Err(PasswordError::Stopped);
        }
        if state.jobs.len() >= self.capacity {
            return Err(PasswordError::Overloaded);
        }
        state.jobs.push_back(job);
        drop(state);
        self.job_arrived.notify_one();
        Ok(())
    }

    fn take(&self, idle_limit: Option<Duration>) -> Taken {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Taken::Job(job);
            }
            if state.closed {
                return Taken::Closed;
            }
            state = match idle_limit {
                None => self
                    .job_arrived
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(limit) => {
                    let (guard, waited) = self
                        .job_arrived
                        .wait_timeout(state, limit)
                        .unwrap_or_else(PoisonError::into_inner);
                    if waited.timed_out() && guard.jobs.is_empty() && !guard.closed {
                        return Taken::IdleTimeout;
                    }
                    guard
                }
            };
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.job_arrived.notify_all();
    }
}

/// Closes the queue when the last `Hashers` handle goes, so the threads end.
struct QueueOwner(Arc<JobQueue>);

impl Drop for QueueOwner {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A buffer for `block_count` blocks that the allocator always maps and unmaps on its own:
/// capacity is reserved past glibc's largest dynamic mmap threshold (32 MiB), so freeing it
/// returns the memory to the kernel at once; only the blocks in use are ever touched, so
/// the extra capacity costs address space, not memory.
fn new_buffer(block_count: usize) -> Vec<Block> {
    const ALWAYS_MAPPED_BYTES: usize = 33 * 1024 * 1024;
    let capacity = block_count.max(ALWAYS_MAPPED_BYTES / std::mem::size_of::<Block>());
    let mut buffer = Vec::with_capacity(capacity);
    buffer.resize(block_count, Block::default());
    buffer
}

/// The pool. Cloning shares it.
#[derive(Clone)]
pub struct Hashers {
    queue: Arc<QueueOwner>,
    cost: HashCost,
    /// Verified against when the email is unknown, so that both cases cost the same.
    dummy_hash: PasswordHashString,
}

impl fmt::Debug for Hashers {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Hashers")
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// Whether the request that queued the job has stopped waiting for its answer.
    fn is_abandoned(&self) -> bool {
        match self {
            Job::Hash { reply, .. } => reply.is_closed(),
            Job::Verify { reply, .. } => reply.is_closed(),
        }
    }
}

impl Hashers {
    /// Starts `threads` hashers, each with its own buffer, behind a queue of `queue_capacity`.
    /// The dummy hash is made here, with the configured cost.
    pub fn start(
        cost: HashCost,
        threads: usize,
        queue_capacity: usize,
        release_after_idle: Option<Duration>,
        niceness: u8,
    ) -> Result<Hashers, PasswordError> {
        let params = params_for(cost)?;
        let queue = Arc::new(JobQueue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
            }),
            job_arrived: Condvar::new(),
            capacity: queue_capacity,
            block_passes: AtomicU64::new(0),
            jobs_finished: AtomicU64::new(0),
        });
        // The first hasher makes the dummy hash with its own buffer before it takes jobs, so
        // that start-up never holds one buffer more than the pool does.
        let (dummy_sender, dummy_receiver) = std::sync::mpsc::channel();
        for index in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let params = params.clone();
            let dummy_sender = (index == 0).then(|| dummy_sender.clone());
            std::thread::Builder::new()
                .name(format!("latchkey-hasher-{index}"))
                .spawn(move || {
                    run_nicer_by(niceness);
                    run_hasher(&queue, &params, release_after_idle, dummy_sender)
                })
                .map_err(|error| PasswordError::Argon2(error.to_string()))?;
        }
        let dummy_hash = dummy_receiver
            .recv()
            .map_err(|_| PasswordError::Stopped)??;
        Ok(Hashers {
            queue: Arc::new(QueueOwner(queue)),
            cost,
            dummy_hash,
        })
    }

    pub fn cost(&self) -> HashCost {
        self.cost
    }

    /// The argon2 work the pool has done, in memory blocks processed (memory cost in KiB ×
    /// passes), counted before each answer is sent: how tests see that padding happens.
    pub fn block_passes(&self) -> u64 {
        self.queue.0.block_passes.load(Ordering::SeqCst)
    }

    /// Jobs waiting for a hasher (not those being worked on), read for the metrics.
    pub fn queue_depth(&self) -> usize {
        self.queue.0.lock().jobs.len()
    }

    /// The most jobs that may wait; one more is refused as `Overloaded`.
    pub fn queue_capacity(&self) -> usize {
        self.queue.0.capacity
    }

    /// Hashes and verifications finished since the start (the dummy hash not included).
    pub fn jobs_finished(&self) -> u64 {
        self.queue.0.jobs_finished.load(Ordering::Relaxed)
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHashString, PasswordError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        answer.await.map_err(|_| PasswordError::Stopped)?
    }

    /// Verifies against `stored`, or against the dummy hash when there is none, so that an
    /// unknown account and a wrong password take the same time. `None` never matches.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<PasswordHashString>,
    ) -> Result<Verification, PasswordError> {
        let is_dummy = stored.is_none();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job::Verify {
            password,
            stored,
            pad_with: self.dummy_hash.clone(),
            reply,
        })?;
        let verification = answer.await.map_err(|_| PasswordError::Stopped)??;
        if is_dummy {
            return Ok(Verification {
                matches: false,
                needs_rehash: false,
            });
        }
        Ok(verification)
    }

    fn submit(&self, job: Job) -> Result<(), PasswordError> {
        self.queue.0.push(job)
    }
}

/// One thread's argon2 buffer, kept for hash after hash as each hasher of the pool keeps its
/// own: how the benchmark measures the pool's limit with this module's hashing, not a copy.
pub struct ReusedBuffer {
    params: Params,
    memory: Vec<Block>,
}

impl fmt::Debug for ReusedBuffer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ReusedBuffer")
            .field("block_count", &self.memory.len())
            .finish_non_exhaustive()
    }
}

impl ReusedBuffer {
    pub fn new(cost: HashCost) -> Result<ReusedBuffer, PasswordError> {
        let params = params_for(cost)?;
        Ok(ReusedBuffer {
            memory: new_buffer(params.block_count()),
            params,
        })
    }

    /// Hashes as a hasher thread does: a fresh salt, this buffer, a PHC string.
    pub fn hash(&mut self, password: &Password) -> Result<PasswordHashString, PasswordError> {
        hash_with_memory(password, &self.params, &mut self.memory)
    }
}

/// Hashes on the calling thread with a buffer of its own: for the admin CLI and seeding.
pub fn hash_once(password: &Password, cost: HashCost) -> Result<PasswordHashString, PasswordError> {
    let params = params_for(cost)?;
    hash_with_memory(
        password,
        &params,
        &mut vec![Block::default(); params.block_count()],
    )
}

fn params_for(cost: HashCost) -> Result<Params, PasswordError> {
    Params::new(
        cost.memory_kib,
        cost.iterations,
        cost.parallelism,
        Some(OUTPUT_BYTES),
    )
    .map_err(|error| PasswordError::Argon2(error.to_string()))
}

/// Raises the calling thread's nice value by `niceness` (Linux applies it per thread), so the
/// scheduler hands the CPU to the runtime's threads first: a token check never waits behind a
/// hash for long, and hashes take whatever CPU is left. Raising one's own nice value needs no
/// privilege; if it fails anyway, the hasher runs at the server's priority.
fn run_nicer_by(niceness: u8) {
    if niceness == 0 {
        return;
    }
    let this_thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(this_thread)).unwrap_or(0);
    let wanted = (current + i32::from(niceness.min(19))).min(19);
    if let Err(error) = rustix::process::setpriority_process(Some(this_thread), wanted) {
        tracing::warn!(%error, "cannot lower a hasher thread's priority");
    }
}

fn run_hasher(
    queue: &JobQueue,
    params: &Params,
    release_after_idle: Option<Duration>,
    dummy_sender: Option<std::sync::mpsc::Sender<Result<PasswordHashString, PasswordError>>>,
) {
    // The buffer is made when work arrives and reused for every job while work keeps coming;
    // after `release_after_idle` without a job it goes, so an idle server holds no argon2
    // memory. That is one allocation per busy spell, not one per hash.
    let mut memory: Vec<Block> = Vec::new();
    let block_count = params.block_count();
    let configured_work = block_passes(params);
    if let Some(dummy_sender) = dummy_sender {
        memory = new_buffer(block_count);
        let dummy_password = Password::new("latchkey-dummy-password".to_owned());
        let dummy_hash = hash_with_memory(&dummy_password, params, &mut memory);
        queue
            .block_passes
            .fetch_add(configured_work, Ordering::SeqCst);
        let _ = dummy_sender.send(dummy_hash);
        if release_after_idle.is_some() {
            memory = Vec::new();
        }
    }
    loop {
        let idle_limit = release_after_idle.filter(|_| !memory.is_empty());
        let job = match queue.take(idle_limit) {
            Taken::Job(job) => job,
            Taken::IdleTimeout => {
                memory = Vec::new();
                continue;
            }
            Taken::Closed => return,
        };
        // A job whose request has gone (the client hung up while it waited) is dropped
        // unworked: nobody would read its answer, and its hash would take a hasher from
        // the requests still waiting.
        if job.is_abandoned() {
            continue;
        }
        if memory.is_empty() {
            memory = new_buffer(block_count);
        }
        match job {
            Job::Hash { password, reply } => {
                let hash = hash_with_memory(&password, params, &mut memory);
                queue
                    .block_passes
                    .fetch_add(configured_work, Ordering::SeqCst);
                queue.jobs_finished.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(hash);
            }
            Job::Verify {
                password,
                stored,
                pad_with,
                reply,
            } => {
                let outcome = verify_with_memory(&password, &stored, params, &mut memory);
                let mut work = outcome.as_ref().map_or(0, |(_, work)| *work);
                // A hash made with cheaper costs (or none: a malformed one) is padded with
                // a check against the dummy at the configured cost, before the answer goes,
                // so a cost change does not tell which accounts still have old hashes.
                if work < configured_work
                    && let Ok((_, pad_work)) =
                        verify_with_memory(&password, &pad_with, params, &mut memory)
                {
                    work = work.saturating_add(pad_work);
                }
                queue.block_passes.fetch_add(work, Ordering::SeqCst);
                queue.jobs_finished.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(outcome.map(|(verification, _)| verification));
            }
        }
    }
}

fn hash_with_memory(
    password: &Password,
    params: &Params,
    memory: &mut [Block],
) -> Result<PasswordHashString, PasswordError> {
    let argon2_error = |error: argon2::Error| PasswordError::Argon2(error.to_string());
    let hash_error = |error: argon2::password_hash::Error| PasswordError::Argon2(error.to_string());
    let phc_error =
        |error: argon2::password_hash::phc::Error| PasswordError::Argon2(error.to_string());
    let mut salt_bytes = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt_bytes).map_err(|error| PasswordError::Argon2(error.to_string()))?;
    let mut output = [0u8; OUTPUT_BYTES];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.expose_secret().as_bytes(),
            &salt_bytes,
            &mut output,
            &mut memory[..params.block_count()],
        )
        .map_err(argon2_error)?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(hash_error)?,
        salt: Some(Salt::new(&salt_bytes).map_err(phc_error)?),
        hash: Some(Output::new(&output).map_err(phc_error)?),
    };
    Ok(PasswordHashString::new(phc.to_string()))
}

/// The argon2 work of one hash with `params`: memory blocks × passes. The lanes run one
/// after another (argon2's `parallel` feature is off), so this is what the time follows.
fn block_passes(params: &Params) -> u64 {
    u64::from(params.m_cost()).saturating_mul(u64::from(params.t_cost()))
}

/// Verifies `password` against `stored`; also returns the argon2 work it took (0 when the
/// stored hash is malformed and nothing was computed).
fn verify_with_memory(
    password: &Password,
    stored: &PasswordHashString,
    configured: &Params,
    memory: &mut [Block],
) -> Result<(Verification, u64), PasswordError> {
    let no_match = (
        Verification {
            matches: false,
            needs_rehash: false,
        },
        0,
    );
    let Ok(phc) = PasswordHash::new(stored.expose_secret()) else {
        return Ok(no_match);
    };
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return Ok(no_match);
    };
    let Ok(algorithm) = Algorithm::try_from(phc.algorithm.as_str()) else {
        return Ok(no_match);
    };
    let version = match phc.version.map(Version::try_from) {
        Some(Ok(version)) => version,
        None => Version::V0x13,
        Some(Err(_)) => return Ok(no_match),
    };
    let Ok(stored_params) = Params::try_from(&phc) else {
        return Ok(no_match);
    };
    let Ok(stored_params) = Params::new(
        stored_params.m_cost(),
        stored_params.t_cost(),
        stored_params.p_cost(),
        Some(expected.len()),
    ) else {
        return Ok(no_match);
    };
    // A stored hash made with more memory than the configured cost (an older, stronger
    // setting) needs a larger buffer for this one call.
    let mut larger_memory;
    let blocks = if stored_params.block_count() <= memory.len() {
        &mut memory[..stored_params.block_count()]
    } else {
        larger_memory = vec![Block::default(); stored_params.block_count()];
        &mut larger_memory[..]
    };
    let mut computed = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, stored_params.clone())
        .hash_password_into_with_memory(
            password.expose_secret().as_bytes(),
            salt.as_ref(),
            &mut computed,
            blocks,
        )
        .map_err(|error| PasswordError::Argon2(error.to_string()))?;
    let matches = bool::from(computed.as_slice().ct_eq(expected.as_bytes()));
    let needs_rehash = algorithm != Algorithm::Argon2id
        || version != Version::V0x13
        || stored_params.m_cost() != configured.m_cost()
        || stored_params.t_cost() != configured.t_cost()
        || stored_params.p_cost() != configured.p_cost();
    Ok((
        Verification {
            matches,
            needs_rehash: matches && needs_rehash,
        },
        block_passes(&stored_params),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn new_password(text: &str, current: Option<&str>) -> Result<NewPassword, AuthError> {
        let current = current.map(|text| Password::new(text.to_owned()));
        NewPassword::parse_with_min_length(
            Password::new(text.to_owned()),
            "new-password",
            8,
            "ada@example.com",
            current.as_ref(),
        )
    }

    #[test]
    fn a_new_password_keeps_to_the_length_range_and_names_its_field() {
        assert!(new_password("12345678", None).is_ok());
        assert!(new_password(&"é".repeat(72), None).is_ok());
        for refused in ["1234567", &"x".repeat(73)] {
            let Err(AuthError::PasswordLength {
                field,
                min_length,
                max_length,
            }) = new_password(refused, None)
            else {
                panic!("{refused:?} was not refused for its length");
            };
            assert_eq!((field, min_length, max_length), ("new-password", 8, 72));
        }
    }

    #[test]
    fn a_new_password_differs_from_the_address_and_the_password_it_replaces() {
        for (text, current, expected) in [
            (
                " ADA@example.com ",
                None,
                "must differ from the email address",
            ),
            (
                "the same one",
                Some("the same one"),
                "must differ from the current password",
            ),
        ] {
            let Err(AuthError::InvalidField { field, message }) = new_password(text, current)
            else {
                panic!("{text:?} was not refused");
            };
            assert_eq!((field, message), ("new-password", expected));
        }
        assert!(new_password("another one", Some("the old one")).is_ok());
    }

    /// A job whose request stopped waiting before a hasher took it is never worked: behind
    /// a verification that keeps the one hasher busy, a second one is queued and its request
    /// dropped; only the first and a third, queued after, are counted as finished.
    #[tokio::test]
    async fn a_job_whose_request_has_gone_is_dropped_unworked() {
        // Dear enough (tens of milliseconds) that the first job is still being worked when
        // the second's request goes, microseconds after both were queued.
        let busy_cost = HashCost {
            memory_kib: 16384,
            iterations: 3,
            parallelism: 1,
        };
        let hashers = Hashers::start(busy_cost, 1, 8, None, 0).unwrap();
        let stored = hashers
            .hash(Password::new("correct horse".into()))
            .await
            .unwrap();
        let finished_before = hashers.jobs_finished();
        let mut first =
            Box::pin(hashers.verify(Password::new("first".into()), Some(stored.clone())));
        let mut abandoned =
            Box::pin(hashers.verify(Password::new("abandoned".into()), Some(stored.clone())));
        // One poll each queues both jobs; the second's request then goes.
        let queued = tokio::select! {
            biased;
            _ = &mut first => false,
            _ = &mut abandoned => false,
            _ = std::future::ready(()) => true,
        };
        assert!(queued);
        drop(abandoned);
        assert!(!first.await.unwrap().matches);
        let third = hashers
            .verify(Password::new("correct horse".into()), Some(stored))
            .await
            .unwrap();
        assert!(third.matches);
        assert_eq!(hashers.jobs_finished(), finished_before + 2);
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only_and_flags_other_costs_for_rehash() {
        let hashers = Hashers::start(CHEAP, 2, 8, Some(Duration::from_millis(50)), 0).unwrap();
        let hash = hashers
            .hash(Password::new("correct horse".into()))
            .await
            .unwrap();
        assert!(
            hash.expose_secret()
                .starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{}",
            hash.expose_secret()
        );
        let good = hashers
            .verify(Password::new("correct horse".into()), Some(hash.clone()))
            .await
            .unwrap();
        assert_eq!(
            good,
            Verification {
                matches: true,
                needs_rehash: false
            }
        );
        let bad = hashers
            .verify(Password::new("wrong horse".into()), Some(hash))
            .await
            .unwrap();
        assert!(!bad.matches);
        let dummy = hashers
            .verify(Password::new("x".into()), None)
            .await
            .unwrap();
        assert!(!dummy.matches);

        let older = hash_once(
            &Password::new("correct horse".into()),
            HashCost {
                memory_kib: 128,
                ..CHEAP
            },
        )
        .unwrap();
        let verification = hashers
            .verify(Password::new("correct horse".into()), Some(older))
            .await
            .unwrap();
        assert_eq!(
            verification,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
    }

    #[tokio::test]
    async fn a_hash_cheaper_than_the_configured_cost_is_padded_to_at_least_that_cost() {
        let configured = HashCost {
            memory_kib: 256,
            iterations: 2,
            parallelism: 1,
        };
        let configured_work = 256 * 2;
        let hashers = Hashers::start(configured, 1, 8, None, 0).unwrap();
        let work_of = async |stored: Option<PasswordHashString>, password: &str| {
            let before = hashers.block_passes();
            let verification = hashers
                .verify(Password::new(password.into()), stored)
                .await
                .unwrap();
            (verification, hashers.block_passes() - before)
        };
        let current = hash_once(&Password::new("pw".into()), configured).unwrap();
        let cheaper = hash_once(&Password::new("pw".into()), CHEAP).unwrap();
        let stronger = hash_once(
            &Password::new("pw".into()),
            HashCost {
                memory_kib: 512,
                ..configured
            },
        )
        .unwrap();

        // Current cost, unknown account (the dummy) and a stronger hash: one check each.
        assert_eq!(
            work_of(Some(current.clone()), "pw").await.1,
            configured_work
        );
        assert_eq!(work_of(None, "pw").await.1, configured_work);
        assert_eq!(work_of(Some(stronger), "wrong").await.1, 512 * 2);
        // A cheaper hash: its own check, then the dummy at the configured cost, whether or
        // not the password matches; the match and the re-hash flag are the stored hash's.
        let (verification, work) = work_of(Some(cheaper.clone()), "pw").await;
        assert_eq!(work, 64 + configured_work);
        assert_eq!(
            verification,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
        let (verification, work) = work_of(Some(cheaper), "wrong").await;
        assert_eq!(work, 64 + configured_work);
        assert!(!verification.matches);
        // A malformed stored hash computes nothing of its own: the pad is the whole cost.
        let (verification, work) =
            work_of(Some(PasswordHashString::new("$argon2id$junk".into())), "pw").await;
        assert_eq!(work, configured_work);
        assert!(!verification.matches);
    }

    #[test]
    fn passwords_do_not_print() {
        assert_eq!(
            format!("{:?}", Password::new("secret".into())),
            "Password(***)"
        );
    }

    #[test]
    fn a_hasher_thread_runs_nicer_than_the_server() {
        let server_niceness = rustix::process::getpriority_process(None).unwrap();
        let niceness_in_a_hasher_thread = |niceness| {
            std::thread::spawn(move || {
                run_nicer_by(niceness);
                rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
            })
            .join()
            .unwrap()
        };
        assert_eq!(
            niceness_in_a_hasher_thread(7),
            (server_niceness + 7).min(19)
        );
        assert_eq!(niceness_in_a_hasher_thread(0), server_niceness);
        assert_eq!(niceness_in_a_hasher_thread(200), 19);
        // The thread that called it keeps its own.
        assert_eq!(
            rustix::process::getpriority_process(None).unwrap(),
            server_niceness
        );
    }
}
