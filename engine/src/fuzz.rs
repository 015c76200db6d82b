//! Entry points for the fuzz targets (`fuzz/`), kept in the library so
//! that ordinary tests can run them on known inputs too.

use std::collections::BTreeMap;

use crate::frontend::{dockerignore, instructions, parser, shell};
use crate::plan;

/// Feeds arbitrary bytes through the whole frontend: parse, type, plan
/// (with and without a build arg), and expand the text as a word.
pub fn dockerfile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(ast) = parser::parse(&text) {
        let _ = ast.dump();
        if let Ok(df) = instructions::from_ast(&ast) {
            let mut req = plan::PlanRequest::default();
            let _ = plan::plan(&df, &req, "Dockerfile");
            req.build_args = BTreeMap::from([("A".to_string(), "x y".to_string())]);
            req.target = df.stages.first().and_then(|s| s.name.clone());
            let _ = plan::plan(&df, &req, "Dockerfile");
        }
    }
    let env = shell::EnvList::from_pairs(["A=a b", "E="]);
    for escape in ['\\', '`'] {
        let _ = shell::Lexer::new(escape).process(&text, &env);
    }
    let _ = parser::heredocs_from_line(&text);
}

/// Feeds arbitrary bytes as an ignore file, then matches every line of it
/// as a path.
pub fn dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let patterns = dockerignore::read_patterns(&text);
    if let Ok(m) = dockerignore::Matcher::new(&patterns) {
        for line in text.lines().take(64) {
            let _ = m.matches(line);
            let _ = m.matches_exact(line);
        }
    }
    for line in text.lines().take(16) {
        let _ = dockerignore::describe_pattern(line);
    }
}
