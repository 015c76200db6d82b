//! The wasmtime engine's configuration. The build script includes this
//! file too: it precompiles wbox with an engine configured exactly like
//! the one that runs it (an artifact loads only into such an engine).

/// The native stack wasm code (a step's program and all it spawns) may use.
pub const MAX_WASM_STACK: usize = 8 << 20;

/// The configuration of the engine every guest runs in.
pub fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    // Shells and awk recurse deeply (a function calling itself 1000
    // times); wasmtime's default 512 KiB stops them long before dash
    // or gawk would. Guests run on threads with room for this.
    config.max_wasm_stack(MAX_WASM_STACK);
    // Unused (no async), but wasmtime requires it to be the larger.
    config.async_stack_size(MAX_WASM_STACK + (1 << 20));
    config
}
