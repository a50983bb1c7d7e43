//! `eventbus`: the command line of the event bus. Everything but the allocator is in the library.

/// mimalloc: the system allocator spent half the bench time on contention between threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eventbus_cli::main()
}
