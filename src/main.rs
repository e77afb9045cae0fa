//! The `latchkey` binary: parses the command line and hands over to `cli`.

/// jemalloc rather than glibc's malloc: glibc keeps the pages that a burst of requests freed
/// inside its per-thread arenas, so an idle server stayed at the burst's size; jemalloc's
/// background thread hands freed pages back to the kernel after its decay time. Its settings
/// are fixed at build time in `.cargo/config.toml`, and `_RJEM_MALLOC_CONF` overrides them.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    latchkey::cli::main()
}
