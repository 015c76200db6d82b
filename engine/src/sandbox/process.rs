//! `wbuild:sandbox/process` (see `wit/wbuild.wit`): the imports wbuild
//! gives preview-1 guests (spawn, spawn-io, spawn-pipeline,
//! spawn-background, wait-job, take-output, set-mode, get-mode, set-owner,
//! make-symlink), with the decoding of their arguments from guest memory.
//! What they do is elsewhere: starting programs in `spawn.rs`, modes,
//! owners and links in `meta.rs`.

use std::sync::Arc;

use wasmtime::Linker;

use super::meta::{check_access, get_groups, get_mode, get_owner, make_symlink, set_meta};
use super::spawn::{spawn_background, spawn_io, spawn_pipeline, take_output};
use super::{RunSpec, State};

/// How deep `spawn` may nest.
pub(super) const MAX_SPAWN_DEPTH: u32 = 32;

/// The most stages one pipeline may have.
pub(super) const MAX_STAGES: usize = 256;

/// The import module name of the `wbuild:sandbox/process` interface.
pub const PROCESS_MODULE: &str = "wbuild:sandbox/process@0.1.0";

/// Reads `len` bytes at `ptr` of the guest's memory, bounds-checked.
pub(super) fn guest_bytes(data: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize)?;
    data.get(start..end)
}

pub(super) fn guest_str(data: &[u8], ptr: u32, len: u32) -> Option<String> {
    guest_bytes(data, ptr, len).map(|b| String::from_utf8_lossy(b).into_owned())
}

pub(super) fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at.checked_add(4)?)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub(super) type SpawnRequest = (Vec<String>, Vec<(String, String)>, String);

/// A canonical-ABI `list<string>`: 8-byte (pointer, length) pairs.
fn read_strings(data: &[u8], ptr: u32, len: u32) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for i in 0..len as usize {
        let at = (ptr as usize).checked_add(i.checked_mul(8)?)?;
        out.push(guest_str(data, u32_at(data, at)?, u32_at(data, at + 4)?)?);
    }
    Some(out)
}

/// A canonical-ABI `list<tuple<string, string>>`: 16-byte records.
fn read_pairs(data: &[u8], ptr: u32, len: u32) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for i in 0..len as usize {
        let at = (ptr as usize).checked_add(i.checked_mul(16)?)?;
        let k = guest_str(data, u32_at(data, at)?, u32_at(data, at + 4)?)?;
        let v = guest_str(data, u32_at(data, at + 8)?, u32_at(data, at + 12)?)?;
        out.push((k, v));
    }
    Some(out)
}

/// Reads spawn's (argv, env, cwd) from the canonical-ABI lists: argv's
/// pointer and length, env's, cwd's.
pub(super) fn read_spawn_request(
    data: &[u8],
    [ap, al, ep, el, cp, cl]: [u32; 6],
) -> Option<SpawnRequest> {
    Some((
        read_strings(data, ap, al)?,
        read_pairs(data, ep, el)?,
        guest_str(data, cp, cl)?,
    ))
}

/// A pipeline's stages (a `list<list<string>>`: 8-byte pairs pointing at
/// argv lists), env and cwd.
type PipelineRequest = (Vec<Vec<String>>, Vec<(String, String)>, String);

pub(super) fn read_pipeline_request(
    data: &[u8],
    [sp, sl, ep, el, cp, cl]: [u32; 6],
) -> Option<PipelineRequest> {
    let mut stages = Vec::new();
    for i in 0..sl as usize {
        let at = (sp as usize).checked_add(i.checked_mul(8)?)?;
        stages.push(read_strings(
            data,
            u32_at(data, at)?,
            u32_at(data, at + 4)?,
        )?);
    }
    Some((stages, read_pairs(data, ep, el)?, guest_str(data, cp, cl)?))
}

/// `wbuild:sandbox/process`: spawn, spawn-io, take-output, set-mode,
/// get-mode, set-owner (see `wit/wbuild.wit`).
pub(super) fn add_process_to_linker(
    linker: &mut Linker<State>,
    parent: &RunSpec,
) -> wasmtime::Result<()> {
    let parent = Arc::new(parent.clone());
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "spawn",
        move |mut caller: wasmtime::Caller<'_, State>,
              ap: u32,
              al: u32,
              ep: u32,
              el: u32,
              cp: u32,
              cl: u32|
              -> i32 { spawn_io(&mut caller, &p, [ap, al, ep, el, cp, cl], (0, 0), 0) },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "spawn-io",
        move |mut caller: wasmtime::Caller<'_, State>,
              ap: u32,
              al: u32,
              ep: u32,
              el: u32,
              cp: u32,
              cl: u32,
              ip: u32,
              il: u32,
              how: u32|
              -> i32 { spawn_io(&mut caller, &p, [ap, al, ep, el, cp, cl], (ip, il), how) },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "spawn-pipeline",
        move |mut caller: wasmtime::Caller<'_, State>,
              sp: u32,
              sl: u32,
              ep: u32,
              el: u32,
              cp: u32,
              cl: u32,
              ip: u32,
              il: u32,
              how: u32|
              -> i32 {
            spawn_pipeline(&mut caller, &p, [sp, sl, ep, el, cp, cl], (ip, il), how)
        },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "spawn-background",
        move |mut caller: wasmtime::Caller<'_, State>,
              sp: u32,
              sl: u32,
              ep: u32,
              el: u32,
              cp: u32,
              cl: u32|
              -> i32 { spawn_background(&mut caller, &p, [sp, sl, ep, el, cp, cl]) },
    )?;
    linker.func_wrap(
        PROCESS_MODULE,
        "wait-job",
        |caller: wasmtime::Caller<'_, State>, job: u32| -> i32 {
            caller.data().spawn.jobs.wait(job).unwrap_or(-2)
        },
    )?;
    linker.func_wrap(
        PROCESS_MODULE,
        "take-output",
        |mut caller: wasmtime::Caller<'_, State>, which: u32, dp: u32, dl: u32| -> i32 {
            take_output(&mut caller, which, dp, dl)
        },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "set-mode",
        move |mut caller: wasmtime::Caller<'_, State>, pp: u32, pl: u32, mode: u32| -> i32 {
            set_meta(&mut caller, &p, pp, pl, Some(mode & 0o7777), None)
        },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "get-mode",
        move |mut caller: wasmtime::Caller<'_, State>, pp: u32, pl: u32| -> i32 {
            get_mode(&mut caller, &p, pp, pl)
        },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "get-owner",
        move |mut caller: wasmtime::Caller<'_, State>, pp: u32, pl: u32, follow: u32| -> i64 {
            get_owner(&mut caller, &p, pp, pl, follow != 0)
        },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "make-symlink",
        move |mut caller: wasmtime::Caller<'_, State>, tp: u32, tl: u32, pp: u32, pl: u32| -> i32 {
            make_symlink(&mut caller, &p, (tp, tl), (pp, pl))
        },
    )?;
    linker.func_wrap(
        PROCESS_MODULE,
        "get-ids",
        |caller: wasmtime::Caller<'_, State>| -> i64 {
            let ids = &caller.data().spawn.tree.ids;
            (i64::from(ids.uid) << 32) | i64::from(ids.gid)
        },
    )?;
    linker.func_wrap(
        PROCESS_MODULE,
        "get-groups",
        |mut caller: wasmtime::Caller<'_, State>, dp: u32, dl: u32| -> i32 {
            get_groups(&mut caller, dp, dl)
        },
    )?;
    let p = parent.clone();
    linker.func_wrap(
        PROCESS_MODULE,
        "check-access",
        move |mut caller: wasmtime::Caller<'_, State>, pp: u32, pl: u32, mode: u32| -> i32 {
            check_access(&mut caller, &p, (pp, pl), mode)
        },
    )?;
    let p = parent;
    linker.func_wrap(
        PROCESS_MODULE,
        "set-owner",
        move |mut caller: wasmtime::Caller<'_, State>,
              pp: u32,
              pl: u32,
              uid: u32,
              gid: u32|
              -> i32 { set_meta(&mut caller, &p, pp, pl, None, Some((uid, gid))) },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use wasmtime::{Store, StoreLimitsBuilder};
    use wasmtime_wasi::WasiCtxBuilder;

    use crate::sandbox::engine;
    use crate::sandbox::stdio::{Sink, Source, Stdio};
    use crate::sandbox::SpawnContext;

    /// `wit/wbuild.wit` says what guests may import: every function of its
    /// `process` interface is defined, with the core signature the
    /// canonical ABI gives it, and nothing else is.
    #[test]
    fn the_process_interface_matches_its_wit() {
        use wit_parser::abi::{AbiVariant, WasmType};
        let mut resolve = wit_parser::Resolve::new();
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/wbuild.wit");
        resolve.push_file(&wit).unwrap();
        let (_, iface) = resolve
            .interfaces
            .iter()
            .find(|(_, i)| i.name.as_deref() == Some("process"))
            .unwrap();

        let engine = engine().unwrap();
        let mut linker: Linker<State> = Linker::new(engine);
        let spec = RunSpec {
            program: Arc::new(Vec::new()),
            program_name: "test".into(),
            argv: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            preopens: Vec::new(),
            clock: 0,
            seed: Vec::new(),
            timeout: std::time::Duration::from_secs(1),
            memory: 1 << 20,
            limit_flags: crate::sandbox::LimitFlags::STEP,
            output_limit: 0,
            inherit_stdio: false,
        };
        add_process_to_linker(&mut linker, &spec).unwrap();
        let ctx = Arc::new(SpawnContext::new(None, None, std::time::Instant::now()));
        let mut store = Store::new(
            engine,
            State {
                wasi: WasiCtxBuilder::new().build_p1(),
                limits: StoreLimitsBuilder::new().build(),
                spawn: ctx,
                depth: 0,
                stdio: Stdio {
                    stdin: Source::Empty,
                    stdout: Sink::Inherit,
                    stderr: Sink::Inherit,
                },
                captured: Default::default(),
                module: wasmtime::Module::new(engine, b"\0asm\x01\0\0\0").unwrap(),
                p1: Default::default(),
            },
        );
        let core = |t: &WasmType| match t {
            WasmType::I32 | WasmType::Pointer | WasmType::Length => wasmtime::ValType::I32,
            WasmType::I64 | WasmType::PointerOrI64 => wasmtime::ValType::I64,
            WasmType::F32 => wasmtime::ValType::F32,
            WasmType::F64 => wasmtime::ValType::F64,
        };
        let same = |a: &[wasmtime::ValType], b: &[wasmtime::ValType]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| wasmtime::ValType::eq(x, y))
        };
        for (name, f) in &iface.functions {
            let sig = resolve.wasm_signature(AbiVariant::GuestImport, f);
            assert!(!sig.retptr, "{name}: results must be scalars");
            let want: Vec<_> = sig.params.iter().map(core).collect();
            let want_results: Vec<_> = sig.results.iter().map(core).collect();
            let func = linker
                .get(&mut store, PROCESS_MODULE, name)
                .ok()
                .and_then(|e| e.into_func())
                .unwrap_or_else(|| panic!("{name} is in the wit but not provided"));
            let ty = func.ty(&store);
            let got: Vec<_> = ty.params().collect();
            let got_results: Vec<_> = ty.results().collect();
            assert!(
                same(&got, &want),
                "{name}: params {got:?}, wit says {want:?}"
            );
            assert!(
                same(&got_results, &want_results),
                "{name}: results {got_results:?}, wit says {want_results:?}"
            );
        }
        let provided = linker
            .iter(&mut store)
            .filter(|(m, _, _)| *m == PROCESS_MODULE)
            .count();
        assert_eq!(
            provided,
            iface.functions.len(),
            "every import is in the wit"
        );
    }
}
