//! The layering of dtr-server's modules, read from its source.
//!
//! Every `src/**/*.rs` file is scanned for paths that leave its top-level
//! module: `crate::foo::...` (also `use crate::{foo::..., bar}`) and
//! `super::...` chains that climb to the crate root. Comments, doc
//! comments, string and character literals and `#[cfg(test)]` items are
//! blanked first, so only what the built library uses counts. `lib.rs`,
//! the crate root that wires every module together, is not scanned. The
//! result is a graph between the top-level modules (`config`, `http`,
//! `grants`, ...), and the rules below are assertions over it.
//!
//! The scan is textual on purpose: no parser dependency, and simple enough
//! to trust. Its limits: a module named through a root re-export
//! (`crate::AppState`) is not seen, nor a path built by a macro, and
//! `super::` inside an inline module other than `#[cfg(test)]` ones would
//! be resolved as if it were in its file's module (there is none today).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules `config` may import, each with the reason. Each must be a
/// leaf (import nothing from the crate), so no cycle can pass through
/// `config`, which everyone else imports.
const CONFIG_MAY_IMPORT: &[(&str, &str)] = &[
    (
        "policy",
        "Config carries the validated policy::Rule, and the \
         authorization_details_match language is compiled by policy::details",
    ),
    (
        "approvers",
        "a rule's approvers (group:, user:, subject, owner) are parsed where \
         the rule is validated; approvers is pure and imports nothing",
    ),
    (
        "outbound",
        "outbound::check_form is the one rule for the form of a client-chosen \
         URL, shared by start-up validation and the SSRF guard",
    ),
];

/// Module name -> module it imports -> where (`file:line`).
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

// ---------------------------------------------------------------------------
// Blanking: comments, literals, test-only items.

/// `src` with comments and the contents of string and character literals
/// replaced by spaces; newlines are kept, so line numbers still hold.
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        // Line comment (`//`, `///`, `//!`).
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
            continue;
        }
        // Block comment, nested as in Rust.
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            continue;
        }
        // Raw string: r"..", r#".."#, br#".."#.
        let raw_start = if !prev_ident && c[i] == 'r' {
            Some(i + 1)
        } else if !prev_ident && c[i] == 'b' && c.get(i + 1) == Some(&'r') {
            Some(i + 2)
        } else {
            None
        };
        if let Some(mut j) = raw_start {
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) == Some(&'"') {
                out.extend(&c[i..=j]);
                i = j + 1;
                while i < c.len() {
                    let closes = c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#'));
                    if closes {
                        out.extend(&c[i..=i + hashes]);
                        i += hashes + 1;
                        break;
                    }
                    blank(&mut out, c[i]);
                    i += 1;
                }
                continue;
            }
        }
        // String (and byte string: the `b` was copied as an identifier).
        if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
            if i < c.len() {
                out.push('"');
                i += 1;
            }
            continue;
        }
        // Character literal ('x', '\n', '\u{..}'); a lifetime is left alone.
        if c[i] == '\'' {
            let end = if c.get(i + 1) == Some(&'\\') {
                (i + 3..c.len()).find(|&k| c[k] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = end {
                out.push('\'');
                for &ch in &c[i + 1..end] {
                    blank(&mut out, ch);
                }
                out.push('\'');
                i = end + 1;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

/// `code` (already without comments and literals) with every
/// `#[cfg(test)]` item blanked: the attribute up to the end of the item's
/// braces, or to its `;` when it has none (`#[cfg(test)] mod tests;`).
/// Also returns the names of test-only modules declared as `mod name;`,
/// whose files are then not scanned.
fn blank_test_items(code: &str) -> (String, Vec<String>) {
    const ATTR: &str = "#[cfg(test)]";
    let mut c: Vec<char> = code.chars().collect();
    let attr: Vec<char> = ATTR.chars().collect();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i + attr.len() <= c.len() {
        if c[i..i + attr.len()] != attr[..] {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + attr.len();
        while j < c.len() && c[j] != '{' && c[j] != ';' {
            j += 1;
        }
        let end = if j < c.len() && c[j] == '{' {
            let mut depth = 0;
            let mut k = j;
            while k < c.len() {
                match c[k] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            k
        } else {
            let item: String = c[start + attr.len()..j.min(c.len())].iter().collect();
            let words: Vec<&str> = item.split_whitespace().collect();
            if let Some(p) = words.iter().position(|w| *w == "mod") {
                if let Some(name) = words.get(p + 1) {
                    test_mods.push((*name).to_owned());
                }
            }
            j
        };
        let len = c.len();
        for ch in c.iter_mut().take((end + 1).min(len)).skip(start) {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = end + 1;
    }
    (c.into_iter().collect(), test_mods)
}

// ---------------------------------------------------------------------------
// References.

fn is_ident_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The identifier starting at `i`, after any whitespace.
fn ident_at(c: &[char], mut i: usize) -> (String, usize) {
    while i < c.len() && c[i].is_whitespace() {
        i += 1;
    }
    let start = i;
    while i < c.len() && is_ident_char(c[i]) {
        i += 1;
    }
    (c[start..i].iter().collect(), i)
}

/// The first path segment of every item of the `{...}` group at `i`
/// (`{config::Config, state::{AppState, X}, store}` gives config, state,
/// store).
fn group_heads(c: &[char], i: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut k = i;
    while k < c.len() {
        match c[k] {
            '{' => {
                depth += 1;
                expect_head = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_head = true,
            ch if expect_head && depth == 1 && is_ident_char(ch) => {
                let (name, next) = ident_at(c, k);
                heads.push(name);
                expect_head = false;
                k = next;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    heads
}

/// The names after `crate::` (or a `super::` chain reaching the crate
/// root) at `i`: one identifier, or the heads of a `{...}` group.
fn names_at(c: &[char], mut i: usize) -> Vec<String> {
    while i < c.len() && c[i].is_whitespace() {
        i += 1;
    }
    if c.get(i) == Some(&'{') {
        group_heads(c, i)
    } else {
        let (name, _) = ident_at(c, i);
        if name.is_empty() {
            Vec::new()
        } else {
            vec![name]
        }
    }
}

/// Every crate-root name blanked code refers to, with its line (from 1),
/// for a file in module `module` (`["config", "http"]` for
/// `src/config/http.rs`): `crate::name`, and `super::` chains that climb
/// to the crate root. Names may be items of the root rather than modules;
/// callers keep the ones that are modules.
fn root_names(code: &str, module: &[String]) -> Vec<(usize, String)> {
    let c: Vec<char> = code.chars().collect();
    let mut names = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\n' {
            line += 1;
        }
        let boundary = i == 0 || !(is_ident_char(c[i - 1]) || c[i - 1] == '$' || c[i - 1] == ':');
        if boundary && c[i..].starts_with(&['c', 'r', 'a', 't', 'e', ':', ':']) {
            names.extend(names_at(&c, i + 7).into_iter().map(|n| (line, n)));
            i += 7;
            continue;
        }
        if boundary && c[i..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
            let mut ups = 0;
            let mut k = i;
            while c[k..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
                ups += 1;
                k += 7;
                while k < c.len() && c[k].is_whitespace() {
                    if c[k] == '\n' {
                        line += 1;
                    }
                    k += 1;
                }
            }
            // `super` of a file's module climbs one level per `super`;
            // landing on the crate root names a top-level item.
            if ups == module.len() {
                names.extend(names_at(&c, k).into_iter().map(|n| (line, n)));
            }
            i = k;
            continue;
        }
        i += 1;
    }
    names
}

// ---------------------------------------------------------------------------
// The graph of the crate.

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file below `src` (`config/mod.rs` is `config`,
/// `outbound/addresses.rs` is `outbound::addresses`).
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The top-level modules `lib.rs` declares.
fn declared_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let (code, _) = blank_test_items(&blank_comments_and_literals(&lib));
    code.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == "mod")?;
            w.get(at + 1)?.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

/// Edges between top-level modules, each with where it was seen.
fn graph() -> Graph {
    let src = src_dir();
    let modules = declared_modules();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    let mut test_only: Vec<Vec<String>> = Vec::new();
    let mut scanned = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let module = module_of(relative);
        if module == ["lib"] {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let (code, test_mods) = blank_test_items(&blank_comments_and_literals(&text));
        for m in test_mods {
            let mut p = module.clone();
            p.push(m);
            test_only.push(p);
        }
        scanned.push((relative.to_path_buf(), module, code));
    }
    for (relative, module, code) in scanned {
        if test_only.iter().any(|t| module.starts_with(t)) {
            continue;
        }
        let top = &module[0];
        assert!(
            modules.contains(top),
            "{} is in no module lib.rs declares",
            relative.display()
        );
        for (line, name) in root_names(&code, &module) {
            if &name != top && modules.contains(&name) {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(name)
                    .or_default()
                    .push(format!("src/{}:{line}", relative.display()));
            }
        }
    }
    graph
}

/// One line per edge: `from -> to (first place, and how many more)`.
fn describe(edges: &[(&str, &str, &Vec<String>)]) -> String {
    edges
        .iter()
        .map(|(from, to, at)| {
            let more = match at.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            format!("  {from} -> {to} ({}{more})\n", at[0])
        })
        .collect()
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let graph = self.graph;
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found.sort();
    t.found
}

// ---------------------------------------------------------------------------
// The rules.

#[test]
fn the_scan_sees_the_crate() {
    let g = graph();
    assert!(g.len() > 10, "too few modules: {:?}", g.keys());
    // Dependencies no reshaping removes: the handlers use the state, the
    // state is built from the configuration.
    assert!(g["http"].contains_key("state"), "{g:#?}");
    assert!(g["state"].contains_key("config"), "{g:#?}");
}

#[test]
fn config_imports_only_leaf_modules() {
    let g = graph();
    let allowed: BTreeMap<&str, &str> = CONFIG_MAY_IMPORT.iter().copied().collect();
    let reasons: String = CONFIG_MAY_IMPORT
        .iter()
        .map(|(m, why)| format!("  {m}: {why}\n"))
        .collect();
    let mut offenders = Vec::new();
    for (to, at) in &g["config"] {
        if !allowed.contains_key(to.as_str()) {
            offenders.push(("config", to.as_str(), at));
        }
    }
    assert!(
        offenders.is_empty(),
        "config imports modules outside CONFIG_MAY_IMPORT:\n{}allowed, and why:\n{reasons}",
        describe(&offenders)
    );
    let mut not_leaves = Vec::new();
    for m in allowed.keys() {
        for (to, at) in g.get(*m).into_iter().flatten() {
            if !allowed.contains_key(to.as_str()) {
                not_leaves.push((*m, to.as_str(), at));
            }
        }
    }
    assert!(
        not_leaves.is_empty(),
        "a module config may import must import nothing from the crate but others config may import:\n{}allowed, and why:\n{reasons}",
        describe(&not_leaves)
    );
}

#[test]
fn only_http_imports_http() {
    let g = graph();
    let offenders: Vec<_> = g
        .iter()
        .filter_map(|(from, edges)| Some((from.as_str(), "http", edges.get("http")?)))
        .collect();
    assert!(
        offenders.is_empty(),
        "modules outside http import http:\n{}",
        describe(&offenders)
    );
}

#[test]
fn no_module_cycles() {
    let g = graph();
    let found = cycles(&g);
    let mut report = String::new();
    for component in &found {
        report.push_str(&format!("cycle among {}:\n", component.join(", ")));
        let edges: Vec<_> = component
            .iter()
            .flat_map(|from| {
                g[from]
                    .iter()
                    .filter(|(to, _)| component.contains(to))
                    .map(move |(to, at)| (from.as_str(), to.as_str(), at))
            })
            .collect();
        report.push_str(&describe(&edges));
    }
    assert!(found.is_empty(), "{report}");
}

// ---------------------------------------------------------------------------
// The scanner itself.

fn module(path: &str) -> Vec<String> {
    path.split("::").map(str::to_owned).collect()
}

fn names_in(src: &str, path: &str) -> Vec<String> {
    let (code, _) = blank_test_items(&blank_comments_and_literals(src));
    root_names(&code, &module(path))
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

#[test]
fn crate_paths_and_groups() {
    let src = "use crate::config::{Config, StaticClient};\n\
               use crate::{state::AppState, store::{Store, X}, http};\n\
               use crate::{\n    clock::Clock,\n    keys,\n};\n\
               fn f() { crate::metrics::count(); }\n";
    assert_eq!(
        names_in(src, "grants"),
        ["config", "state", "store", "http", "clock", "keys", "metrics"]
    );
}

#[test]
fn super_counts_only_when_it_reaches_the_root() {
    let src = "use super::{err, ConfigError};\nuse super::super::policy::Rule;\n";
    // In config::http, `super` is config itself; `super::super` is the root.
    assert_eq!(names_in(src, "config::http"), ["policy"]);
    // In a top-level module, `super` is the root.
    assert_eq!(names_in(src, "tokens"), ["err", "ConfigError"]);
}

#[test]
fn comments_and_literals_are_not_code() {
    let src = r####"
//! See [`crate::http`].
/// Uses crate::store.
// crate::worker
/* crate::metrics /* nested crate::clock */ crate::keys */
const S: &str = "crate::session";
const R: &str = r#"crate::sealed "quoted" crate::dpop"#;
const B: &[u8] = b"crate::tokens";
const C: char = '"'; const Q: char = '\''; fn f<'a>(x: &'a str) {}
use crate::state::AppState;
"####;
    assert_eq!(names_in(src, "grants"), ["state"]);
}

#[test]
fn test_items_are_not_code() {
    let src = "use crate::store::Store;\n\
               #[cfg(test)]\nmod tests {\n    use crate::http::x;\n    fn g() { if true { crate::worker::run(); } }\n}\n\
               #[cfg(test)]\nuse crate::metrics;\n\
               fn after() { crate::clock::now(); }\n";
    assert_eq!(names_in(src, "grants"), ["store", "clock"]);
    let (_, mods) = blank_test_items("#[cfg(test)]\nmod fixtures;\n");
    assert_eq!(mods, ["fixtures"]);
}

#[test]
fn macro_crate_and_other_crates_are_not_ours() {
    let src = "$crate::x::y(); dtr_proto::crate_thing(); foo_crate::z(); mycrate::w();\n";
    assert!(names_in(src, "grants").is_empty());
}

#[test]
fn lines_are_counted_from_one() {
    let src = "/// crate::a\nuse crate::{\n    b::X,\n};\nuse super::\n    super::c;\n";
    let (code, _) = blank_test_items(&blank_comments_and_literals(src));
    assert_eq!(
        root_names(&code, &module("m::n")),
        [(2, "b".to_owned()), (6, "c".to_owned())]
    );
}

#[test]
fn files_map_to_modules() {
    assert_eq!(module_of(Path::new("config/mod.rs")), ["config"]);
    assert_eq!(module_of(Path::new("config/http.rs")), ["config", "http"]);
    assert_eq!(module_of(Path::new("tokens.rs")), ["tokens"]);
}

#[test]
fn cycles_are_found() {
    let mut g = Graph::new();
    let at = vec!["x".to_owned()];
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")] {
        g.entry(a.into()).or_default().insert(b.into(), at.clone());
    }
    assert_eq!(cycles(&g), [["a", "b", "c"]]);
}
