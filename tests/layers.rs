//! The runtime's layers (ARCHITECTURE.md): each folder of `runtime/src` uses only the
//! folders below it, and no two modules use each other, directly or around a loop.
//!
//! The check reads the source: every `crate::` and `super::` path outside comments is
//! an edge from the module that holds it to the deepest module the path names. The one
//! name every layer may use is the crate-wide error (`crate::error::{Error, Result}`):
//! public operations of every layer return it, and it only gathers the category errors
//! that each layer defines beside its own modules, so edges into it are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first, each with its rank: a layer uses only its own folder and
/// the layers of a lower rank, so `pool` and `manager` (side by side) never use each
/// other.
const LAYERS: &[(&str, usize)] = &[
    ("os", 0),
    ("wire", 1),
    ("process", 2),
    ("ipc", 3),
    ("sync", 4),
    ("launch", 5),
    ("pool", 6),
    ("manager", 6),
];

/// Modules at the root of the crate, above every layer.
const ROOT: &[&str] = &["lib", "private", "error", "fuzzing"];

/// A module path such as `ipc::queue::raw` (`lib` for the crate root).
type Module = String;

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/src")
}

/// Every module of the crate with its file.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("runtime/src is readable")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a UTF-8 file name")
                .to_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module = prefix.to_vec();
                if name != "mod" && !(prefix.is_empty() && name == "lib") {
                    module.push(name);
                }
                let key = if module.is_empty() {
                    "lib".to_owned()
                } else {
                    module.join("::")
                };
                out.insert(key, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &[], &mut out);
    out
}

/// `code` without its `#[cfg(test)] mod name { .. }` blocks: a module's unit tests may
/// drive it through the modules that use it (the codec's bounded decoder is tested
/// through `decode_record`), which is no dependency of the module itself.
fn without_unit_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        let is_mod = after.starts_with("mod ") || after.starts_with("pub(crate) mod ");
        let brace = after.find('{');
        let semicolon = after.find(';');
        match brace {
            Some(open) if is_mod && semicolon.is_none_or(|s| s > open) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            _ => rest = &rest[at + "#[cfg(test)]".len()..],
        }
    }
    out.push_str(rest);
    out
}

/// The code of a file without its comments (line and block) and string literals.
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if bytes[i..].starts_with(b"'\"'") {
            // A character literal holding a quote: not the start of a string.
            out.push_str("' '");
            i += 3;
        } else if (bytes[i..].starts_with(b"r\"") || bytes[i..].starts_with(b"r#"))
            && !out
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            // A raw string `r#"..."#`: it ends at a quote followed by as many `#`.
            let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
            if bytes.get(i + 1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            i += 2 + hashes;
            while i < bytes.len() && !bytes[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// The paths after `crate::` or `super::` in `code`, as written: `a::b::{c, d::e}` gives
/// `a::b::c` and `a::b::d::e`, at any depth of nesting (`self` in a group names the
/// group's own path; `as` renames and `*` globs end a path). An anchor that continues a
/// longer path (`super::super::x`) is part of the path that came before it.
fn paths(code: &str, anchor: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(anchor) {
        let before = &rest[..at];
        rest = &rest[at + anchor.len()..];
        let continues = before.ends_with("::")
            || before
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if continues {
            continue;
        }
        let (trees, used) = use_tree(rest, "");
        out.extend(trees);
        rest = &rest[used..];
    }
    out
}

/// Expands the use tree at the start of `text` under `prefix`; returns the paths and
/// how many bytes of `text` the tree took.
fn use_tree(text: &str, prefix: &str) -> (Vec<String>, usize) {
    let join = |head: &str| match (prefix.is_empty(), head.is_empty()) {
        (true, _) => head.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}::{head}"),
    };
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            end = i + c.len_utf8();
        } else {
            break;
        }
    }
    let written = &text[..end];
    let head = written.trim_end_matches(':');
    let after = text[end..].trim_start();
    let group = (written.is_empty() || written.ends_with("::")) && after.starts_with('{');
    if written.ends_with("::") && after.starts_with('*') {
        // A glob: the path up to it.
        return (vec![join(head)], text.len() - after.len() + 1);
    }
    if !group {
        let head = match head.strip_suffix("self") {
            Some(h) if h.is_empty() || h.ends_with("::") => h.trim_end_matches(':'),
            _ => head,
        };
        return (vec![join(head)], end);
    }
    let used = text.len() - after.len();
    // A group: items separated by commas at depth 0, up to the matching `}`.
    let base = join(head);
    let mut out = Vec::new();
    let mut at = used + 1;
    loop {
        let item = &text[at..];
        let skipped = item.len() - item.trim_start().len();
        at += skipped;
        match text[at..].chars().next() {
            None => break,
            Some('}') => {
                at += 1;
                break;
            }
            Some(',') => {
                at += 1;
                continue;
            }
            Some('*') => {
                out.push(base.clone());
                at += 1;
                continue;
            }
            Some(_) => {}
        }
        let (inner, took) = use_tree(&text[at..], &base);
        out.extend(inner);
        at += took.max(1);
        // Skip an `as name` rename up to the next `,` or `}` at this depth.
        let tail = &text[at..];
        let stop = tail.find([',', '}']).unwrap_or(tail.len());
        if tail[..stop].trim_start().starts_with("as ") {
            at += stop;
        }
    }
    (out, at)
}

/// The deepest module of `known` that `path` (absolute, `::`-separated) names.
fn resolve(path: &str, known: &BTreeMap<Module, PathBuf>) -> Module {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    for n in (1..=parts.len()).rev() {
        let candidate = parts[..n].join("::");
        if known.contains_key(&candidate) {
            return candidate;
        }
    }
    "lib".to_owned()
}

/// The layer folder of `module` and its rank.
fn layer_of(module: &str) -> Option<(&'static str, usize)> {
    let top = module.split("::").next()?;
    LAYERS.iter().find(|(name, _)| *name == top).copied()
}

/// The edges between modules, each with the path that made it.
fn edges(known: &BTreeMap<Module, PathBuf>) -> BTreeMap<(Module, Module), String> {
    let mut out = BTreeMap::new();
    for (module, file) in known {
        let text = without_unit_tests(&code(
            &std::fs::read_to_string(file).expect("a readable source file"),
        ));
        let parent: Vec<&str> = if module == "lib" {
            Vec::new()
        } else {
            let mut p: Vec<&str> = module.split("::").collect();
            // `super` in `a/b.rs` (module `a::b`) or in `a/b/mod.rs` is `a`.
            p.pop();
            p
        };
        let mut found: Vec<(String, String)> = paths(&text, "crate::")
            .into_iter()
            .map(|p| (p.clone(), format!("crate::{p}")))
            .collect();
        for p in paths(&text, "super::") {
            // `super::super::x` inside a module goes further up.
            let mut base = parent.clone();
            let mut rest = p.as_str();
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            let mut full = base.join("::");
            if !full.is_empty() {
                full.push_str("::");
            }
            full.push_str(rest);
            found.push((full, format!("super::{p}")));
        }
        for (path, written) in found {
            let target = resolve(&path, known);
            if target != *module {
                out.entry((module.clone(), target)).or_insert(written);
            }
        }
    }
    out
}

fn is_umbrella_error(target: &str) -> bool {
    target == "error"
}

#[test]
fn every_layer_uses_only_the_layers_below_it() {
    let known = modules(&source_root());
    assert!(known.len() > 20, "found the runtime's modules: {known:?}");
    let mut wrong = Vec::new();
    for ((from, to), written) in edges(&known) {
        if ROOT.contains(&from.split("::").next().unwrap_or("")) || is_umbrella_error(&to) {
            continue;
        }
        let Some(from_layer) = layer_of(&from) else {
            wrong.push(format!("{from}: not inside a layer folder ({LAYERS:?})"));
            continue;
        };
        match layer_of(&to) {
            Some(to_layer) if to_layer.0 == from_layer.0 || to_layer.1 < from_layer.1 => {}
            Some(_) => wrong.push(format!(
                "{from} uses {to} ({written}): a layer of the same rank or higher"
            )),
            None => wrong.push(format!(
                "{from} uses {to} ({written}): the crate root, above every layer"
            )),
        }
    }
    assert!(wrong.is_empty(), "upward uses:\n{}", wrong.join("\n"));
}

#[test]
fn no_module_cycles() {
    let known = modules(&source_root());
    let edges: BTreeMap<(Module, Module), String> = edges(&known)
        .into_iter()
        .filter(|((_, to), _)| !is_umbrella_error(to))
        .collect();
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        // A module and its own submodules (`ipc::queue` and `ipc::queue::raw`) are one
        // unit for this check: a parent re-exports its children's names.
        if to.starts_with(&format!("{from}::")) || from.starts_with(&format!("{to}::")) {
            continue;
        }
        next.entry(from).or_default().insert(to);
    }
    // Depth-first search for a back edge; report the first loop found.
    fn visit<'a>(
        node: &'a str,
        next: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(node, 1);
        stack.push(node);
        for &to in next.get(node).into_iter().flatten() {
            match state.get(to).copied().unwrap_or(0) {
                0 => {
                    if let Some(cycle) = visit(to, next, state, stack) {
                        return Some(cycle);
                    }
                }
                1 => {
                    let start = stack.iter().position(|m| *m == to).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|m| (*m).to_owned()).collect();
                    cycle.push(to.to_owned());
                    return Some(cycle);
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node, 2);
        None
    }
    let mut state = BTreeMap::new();
    let nodes: Vec<&str> = known.keys().map(String::as_str).collect();
    for node in nodes {
        if state.get(node).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(node, &next, &mut state, &mut stack) {
                let shown: Vec<String> = cycle
                    .windows(2)
                    .map(|w| {
                        let how = edges
                            .get(&(w[0].clone(), w[1].clone()))
                            .map_or(String::new(), |p| format!(" ({p})"));
                        format!("{} -> {}{how}", w[0], w[1])
                    })
                    .collect();
                panic!("a module cycle:\n{}", shown.join("\n"));
            }
        }
    }
}

#[test]
fn unit_tests_are_not_dependencies() {
    let text = "use crate::os::sys;\n#[cfg(test)]\nmod tests {\n    fn f() { if x { y } }\n    use crate::pool::Pool;\n}\nuse crate::wire::codec;";
    assert_eq!(
        paths(&without_unit_tests(&code(text)), "crate::"),
        ["os::sys", "wire::codec"]
    );
}

#[test]
fn the_check_sees_paths() {
    let text =
        code("use crate::os::{sys, futex::RawLock}; // crate::sync\nlet x = \"crate::ipc\";");
    assert_eq!(paths(&text, "crate::"), ["os::sys", "os::futex::RawLock"]);
    let nested =
        code("use crate::{os::{self, sys as s}, wire::{codec::{encode, decode}, frames}, ipc::*};");
    assert_eq!(
        paths(&nested, "crate::"),
        [
            "os",
            "os::sys",
            "wire::codec::encode",
            "wire::codec::decode",
            "wire::frames",
            "ipc"
        ]
    );
    // `super::super::x` is one path, not also `super::x`.
    assert_eq!(paths("use super::super::x;", "super::"), ["super::x"]);
    // A quote in a character literal or a raw string does not hide the code after it.
    let quoted = code("let q = '\"'; let r = r#\"a \" b\"#; use crate::wire::codec;");
    assert_eq!(paths(&quoted, "crate::"), ["wire::codec"]);
}
