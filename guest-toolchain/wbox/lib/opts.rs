//! Option parsing as the applets use it: short flags, clustered, with
//! values, and long options.

use crate::lib::io::Io;

/// Splits short options (with values for those in `with_value`) from
/// operands; `--` ends options. Long options are returned as they are.
pub struct Opts {
    pub flags: Vec<(char, Option<String>)>,
    pub long: Vec<String>,
    pub rest: Vec<String>,
}

impl Opts {
    pub fn parse(args: &[&str], with_value: &str) -> Result<Opts, String> {
        let mut o = Opts {
            flags: Vec::new(),
            long: Vec::new(),
            rest: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            let a = args[i];
            if a == "--" {
                o.rest.extend(args[i + 1..].iter().map(|s| s.to_string()));
                break;
            }
            if a.starts_with("--") {
                o.long.push(a.to_string());
            } else if a.starts_with('-') && a.len() > 1 {
                let cs: Vec<char> = a[1..].chars().collect();
                let mut k = 0;
                while k < cs.len() {
                    let c = cs[k];
                    if with_value.contains(c) {
                        let v: String = cs[k + 1..].iter().collect();
                        let v = if v.is_empty() {
                            i += 1;
                            match args.get(i) {
                                Some(v) => v.to_string(),
                                None => {
                                    return Err(format!("option requires an argument -- '{c}'"))
                                }
                            }
                        } else {
                            v
                        };
                        o.flags.push((c, Some(v)));
                        break;
                    }
                    o.flags.push((c, None));
                    k += 1;
                }
            } else {
                o.rest.push(a.to_string());
            }
            i += 1;
        }
        Ok(o)
    }
    pub fn has(&self, c: char) -> bool {
        self.flags.iter().any(|(f, _)| *f == c)
    }
    pub fn val(&self, c: char) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(f, _)| *f == c)
            .and_then(|(_, v)| v.as_deref())
    }
    pub fn vals(&self, c: char) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(f, _)| *f == c)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
    pub fn long_val(&self, name: &str) -> Option<String> {
        self.long
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("--{name}=")).map(|s| s.to_string()))
    }
    pub fn long_has(&self, name: &str) -> bool {
        self.long
            .iter()
            .any(|l| l == &format!("--{name}") || l.starts_with(&format!("--{name}=")))
    }
}

pub(crate) fn opts(prog: &str, args: &[&str], with_value: &str, io: &mut Io) -> Option<Opts> {
    match Opts::parse(args, with_value) {
        Ok(o) => Some(o),
        Err(m) => {
            io.err(prog, &m);
            None
        }
    }
}
