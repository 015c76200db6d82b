//! A test guest: prints its arguments, environment, files and stdin (to
//! stdout or stderr), writes and deletes files, and exits with the code
//! given by `--exit N`.
use std::io::Write;

// wbuild's own imports (wit/wbuild.wit), without wit-bindgen: canonical-ABI
// lists of (ptr, len) pairs.
#[repr(C)]
struct WStr {
    ptr: *const u8,
    len: usize,
}

#[repr(C)]
struct WPair {
    k: WStr,
    v: WStr,
}

#[link(wasm_import_module = "wbuild:sandbox/process@0.1.0")]
extern "C" {
    #[link_name = "spawn"]
    fn host_spawn(a: *const WStr, al: usize, e: *const WPair, el: usize, c: *const u8, cl: usize) -> i32;
    #[link_name = "set-mode"]
    fn host_set_mode(p: *const u8, pl: usize, mode: u32) -> i32;
}

fn wstr(s: &str) -> WStr {
    WStr { ptr: s.as_ptr(), len: s.len() }
}

fn spawn(argv: &[String]) -> i32 {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let a: Vec<WStr> = argv.iter().map(|s| wstr(s)).collect();
    let e: Vec<WPair> = env.iter().map(|(k, v)| WPair { k: wstr(k), v: wstr(v) }).collect();
    let cwd = "/";
    let _ = std::io::stdout().flush();
    unsafe { host_spawn(a.as_ptr(), a.len(), e.as_ptr(), e.len(), cwd.as_ptr(), cwd.len()) }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut code = 0;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--exit" => {
                code = args[i + 1].parse().unwrap_or(99);
                i += 1;
            }
            "--echo" => {
                println!("{}", args[i + 1]);
                i += 1;
            }
            "--err" => {
                eprintln!("{}", args[i + 1]);
                i += 1;
            }
            "--cat" => {
                let mut input = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut input);
                let _ = std::io::stdout().write_all(&input);
            }
            "--stream" => {
                // Copies stdin to stdout a chunk at a time, then says how
                // much went through (on stderr).
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0u64;
                loop {
                    match std::io::Read::read(&mut std::io::stdin(), &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total += n as u64;
                            if std::io::stdout().write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                eprintln!("streamed={total}");
            }
            "--flood" => {
                // Writes forever, ignoring errors: only the pipe's end
                // (SIGPIPE) or the deadline stops it.
                let chunk = vec![b'z'; 1 << 16];
                loop {
                    let _ = std::io::stdout().write_all(&chunk);
                }
            }
            "--env" => {
                let mut vars: Vec<(String, String)> = std::env::vars().collect();
                vars.sort();
                for (k, v) in vars {
                    println!("{k}={v}");
                }
            }
            "--write" => {
                let (path, body) = args[i + 1].split_once('=').unwrap();
                match std::fs::write(path, body) {
                    Ok(()) => {}
                    Err(e) => {
                        eprintln!("write {path}: {e}");
                        code = 2;
                    }
                }
                i += 1;
            }
            "--read" => {
                match std::fs::read_to_string(&args[i + 1]) {
                    Ok(s) => print!("{s}"),
                    Err(e) => {
                        eprintln!("read {}: {e}", args[i + 1]);
                        code = 3;
                    }
                }
                i += 1;
            }
            "--mkdir" => {
                std::fs::create_dir_all(&args[i + 1]).unwrap();
                i += 1;
            }
            "--rm" => {
                let p = &args[i + 1];
                let r = if std::path::Path::new(p).is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
                if let Err(e) = r {
                    eprintln!("rm {p}: {e}");
                    code = 4;
                }
                i += 1;
            }
            "--time" => {
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                println!("time={}", t.as_secs());
            }
            "--chmod" => {
                let mode = u32::from_str_radix(&args[i + 2], 8).unwrap_or(0);
                let p = &args[i + 1];
                let rc = unsafe { host_set_mode(p.as_ptr(), p.len(), mode) };
                if rc != 0 {
                    eprintln!("chmod {p}: errno {rc}");
                    code = 5;
                }
                i += 2;
            }
            "--spawn" => {
                let rc = spawn(&args[i + 1..]);
                println!("spawned exit={rc}");
                code = rc;
                break;
            }
            "--random" => {
                let mut h = std::collections::hash_map::RandomState::new();
                let _ = &mut h;
                use std::hash::{BuildHasher, Hasher};
                let mut x = h.build_hasher();
                x.write_u8(1);
                println!("random={}", x.finish());
            }
            "--exclusive" => {
                // Fails if another program holds PATH; holds it for a while.
                let p = &args[i + 1];
                if std::path::Path::new(p).exists() {
                    eprintln!("{p} is held by someone else");
                    code = 9;
                } else {
                    std::fs::write(p, "held").unwrap();
                    let mut x: u64 = 0;
                    for k in 0..300_000_000u64 {
                        x = x.wrapping_add(k ^ (x >> 3));
                    }
                    if x == 42 {
                        println!("unlikely");
                    }
                    std::fs::remove_file(p).unwrap();
                }
                i += 1;
            }
            "--cwd" => println!("cwd={}", std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default()),
            "--loop" => loop {
                std::hint::spin_loop();
            },
            "--hog" => {
                let mut v: Vec<Vec<u8>> = Vec::new();
                loop {
                    v.push(vec![1u8; 1 << 20]);
                }
            }
            other => {
                eprintln!("probe: unknown option {other}");
                code = 64;
            }
        }
        i += 1;
    }
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
