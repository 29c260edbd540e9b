//! Architecture tests: rules about how the workspace's source is organised, which the compiler does
//! not enforce and which erode one innocent-looking `use` at a time.
//!
//! - No module cycles inside a crate: sibling modules must depend on each other in one direction
//!   only, so that each can be read, tested and moved (to another crate, as the workspace is being
//!   split) without dragging its siblings along.
//! - No long source file without a stated reason: past 800 lines of non-test code a file must say
//!   in its module docs why it is not split.
//! - The domain crate depends on no other workspace crate and no runtime (async, storage, threads).
//!
//! The sources are parsed with `syn`; nothing is compiled. Test code (`#[cfg(test)]` items, test
//! files) is exempt: tests may depend on anything. `ARCHCHECK_ROOT` overrides the workspace root,
//! which is otherwise this package's manifest directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use syn::visit::{self, Visit};

/// The workspace's crates: directory relative to the root, and root files relative to it. A crate
/// whose root file does not exist (yet) is skipped.
const CRATES: &[(&str, &[&str])] = &[
    ("domain", &["src/lib.rs"]),
    ("core", &["src/lib.rs"]),
    ("storage", &["src/lib.rs"]),
    ("sim", &["src/lib.rs"]),
    ("net", &["src/lib.rs", "src/main.rs", "src/bin/loadgen.rs"]),
    ("ffi", &["src/lib.rs"]),
    ("cluster", &["src/lib.rs"]),
    (".", &["src/lib.rs", "src/bin/crash-writer.rs"]),
];

/// Lines of non-test code past which a file must say why it is long.
const LONG_FILE_LINES: usize = 800;
/// The module-doc line that says so.
const LONG_FILE_REASON: &str = "//! Why this file is long:";
/// Crates the domain must not depend on, besides the other `dispatch-*` crates.
const DOMAIN_FORBIDDEN: &[&str] = &["tokio", "hyper", "redb", "crossbeam-channel", "parking_lot"];

/// A module's path below its crate root (`[]` is the root itself).
type ModPath = Vec<String>;

/// Forbids module cycles: inside a crate, for every module, the graph of its child modules (an edge
/// where anything inside one child names anything inside another) must have no cycle. A child
/// naming its parent or a parent naming its child does not count, nor does test code.
#[test]
fn no_module_cycles_inside_any_crate() {
    let root = workspace_root();
    let mut report = Vec::new();
    for (dir, root_files) in CRATES {
        for root_file in *root_files {
            let file = root.join(dir).join(root_file);
            if file.exists() {
                report.extend(module_cycles(&root, &file).iter().map(|c| format!("crate {dir} ({root_file}): {c}")));
            }
        }
    }
    assert!(
        report.is_empty(),
        "module cycles (make the edges go one way: move the shared item down, or invert the dependency):\n{}",
        report.join("\n")
    );
}

/// Keeps files reviewable: a source file with more than 800 lines of non-test code must explain in
/// its module docs (a line starting `//! Why this file is long:`) why it is not split.
#[test]
fn no_long_source_files_without_a_reason() {
    let root = workspace_root();
    let long: Vec<String> = CRATES
        .iter()
        .flat_map(|(dir, _)| long_files(&root, &root.join(dir).join("src")))
        .map(|(file, lines)| format!("{file}: {lines} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "files longer than {LONG_FILE_LINES} lines (tests excluded) whose docs lack `{LONG_FILE_REASON}`:\n{}",
        long.join("\n")
    );
}

/// Keeps the domain pure: `dispatch-domain` depends (normal and build dependencies, transitively)
/// on no other workspace crate and on no runtime crate, so the rules can be used and tested alone.
#[test]
fn the_domain_depends_on_no_workspace_crate_and_no_runtime() {
    let root = workspace_root();
    if !root.join("domain/Cargo.toml").exists() {
        eprintln!("skipped: {} has no domain/Cargo.toml yet", root.display());
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "-p", "dispatch-domain", "-e", "normal,build", "--prefix", "none", "--offline"])
        .current_dir(&root)
        .output()
        .expect("cannot run cargo tree");
    assert!(output.status.success(), "cargo tree failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let bad = domain_violations(&String::from_utf8_lossy(&output.stdout));
    assert!(bad.is_empty(), "dispatch-domain depends on: {}", bad.join(", "));
}

/// The workspace root: `ARCHCHECK_ROOT` if set, else this package's manifest directory.
fn workspace_root() -> PathBuf {
    std::env::var_os("ARCHCHECK_ROOT").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The crates named by a `cargo tree --prefix none` listing that the domain may not depend on.
fn domain_violations(tree: &str) -> Vec<String> {
    let bad: BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| (name.starts_with("dispatch-") && *name != "dispatch-domain") || DOMAIN_FORBIDDEN.contains(name))
        .collect();
    bad.into_iter().map(String::from).collect()
}

/// The `.rs` files under `src` (not test files) that are long without a reason, with their length.
fn long_files(root: &Path, src: &Path) -> Vec<(String, usize)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut long = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("a file found under src is under src");
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let in_tests_dir = rel.parent().is_some_and(|dir| dir.components().any(|c| c.as_os_str() == "tests"));
        if name == "tests.rs" || name.ends_with("_tests.rs") || in_tests_dir {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let lines = non_test_lines(&text);
        if lines > LONG_FILE_LINES && !text.lines().any(|l| l.starts_with(LONG_FILE_REASON)) {
            long.push((display(root, &file), lines));
        }
    }
    long
}

/// Lines before the test module: the first `#[cfg(test)]` at column 0 followed by a `mod ` line.
fn non_test_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    (0..lines.len())
        .find(|&i| {
            lines[i].trim_end() == "#[cfg(test)]"
                && lines[i + 1..].iter().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("mod "))
        })
        .unwrap_or(lines.len())
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> =
        entries.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().expect("cannot list a source directory");
    paths.sort();
    for path in paths {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `file` relative to the workspace root, for messages.
fn display(root: &Path, file: &Path) -> String {
    file.strip_prefix(root).unwrap_or(file).display().to_string()
}

/// A path met in a module's non-test code, with where it was met (`file:line` and its text).
struct Reference {
    module: ModPath,
    segments: Vec<String>,
    site: String,
}

/// One module tree: its modules, the paths they name and the names each brings in with `use`.
#[derive(Default)]
struct Model {
    modules: BTreeSet<ModPath>,
    references: Vec<Reference>,
    imports: HashMap<ModPath, HashMap<String, Vec<String>>>,
}

/// Where a [`Walker`] is: the module, its file, where its `mod x;` children live, and whether it
/// is an inline `mod x { ... }` (which changes what `#[path]` is relative to).
#[derive(Default)]
struct Scope {
    module: ModPath,
    file: PathBuf,
    child_dir: PathBuf,
    inline: bool,
}

/// Walks a module tree from its root file, following `mod` items, and fills a [`Model`].
struct Walker<'a> {
    root: &'a Path,
    model: Model,
    scope: Scope,
}

impl Walker<'_> {
    fn load(&mut self, module: ModPath, file: PathBuf, child_dir: PathBuf) {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read module {}: {e}", file.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", file.display()));
        self.enter(Scope { module, file, child_dir, inline: false }, &ast.items);
    }

    fn enter(&mut self, scope: Scope, items: &[syn::Item]) {
        let saved = std::mem::replace(&mut self.scope, scope);
        self.model.modules.insert(self.scope.module.clone());
        items.iter().for_each(|item| self.visit_item(item));
        self.scope = saved;
    }

    fn record(&mut self, segments: Vec<String>, span: proc_macro2::Span) {
        let site = format!("{}:{} `{}`", display(self.root, &self.scope.file), span.start().line, segments.join("::"));
        self.model.references.push(Reference { module: self.scope.module.clone(), segments, site });
    }
}

/// The attributes of an item (or impl item) `$item` of enum `$kind`, among variants `$variant`.
macro_rules! attrs_of {
    ($item:expr, $kind:ident: $($variant:ident)*) => {
        match $item { $(syn::$kind::$variant(i) => &i.attrs[..],)* _ => &[] }
    };
}

impl<'ast> Visit<'ast> for Walker<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = attrs_of!(item, Item: Const Enum ExternCrate Fn ForeignMod Impl Macro Mod Static Struct Trait
            TraitAlias Type Union Use);
        if !is_test_only(attrs) {
            visit::visit_item(self, item);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        if !is_test_only(attrs_of!(item, ImplItem: Const Fn Type Macro)) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        let name = item.ident.to_string();
        let module = [&self.scope.module[..], std::slice::from_ref(&name)].concat();
        let path_attr = item.attrs.iter().filter(|a| a.path().is_ident("path")).find_map(|a| {
            match &a.meta.require_name_value().ok()?.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
                _ => None,
            }
        });
        let scope = &self.scope;
        if let Some((_, items)) = &item.content {
            let child_dir = scope.child_dir.join(path_attr.unwrap_or(name));
            return self.enter(Scope { module, file: scope.file.clone(), child_dir, inline: true }, items);
        }
        let (file, child_dir) = if let Some(path) = path_attr {
            // Relative to the current file's directory, or to the inline module's; a file loaded
            // so has its children beside it, like a `mod.rs`.
            let file =
                if scope.inline { &scope.child_dir } else { scope.file.parent().unwrap_or(Path::new("")) }.join(path);
            let dir = file.with_file_name("");
            (file, dir)
        } else {
            let (flat, dir) = (scope.child_dir.join(format!("{name}.rs")), scope.child_dir.join(&name));
            if flat.exists() { (flat, dir) } else { (dir.join("mod.rs"), dir) }
        };
        self.load(module, file, child_dir);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        flatten_use(&item.tree, &mut Vec::new(), &mut leaves);
        for (segments, bound, span) in leaves {
            if let Some(name) = bound {
                self.model.imports.entry(self.scope.module.clone()).or_default().insert(name, segments.clone());
            }
            self.record(segments, span);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let relative = matches!(segments.first().map(String::as_str), Some("crate" | "self" | "super"));
        if path.leading_colon.is_none() && (relative || segments.len() > 1) {
            let span = path.segments.first().map_or_else(proc_macro2::Span::call_site, |s| s.ident.span());
            self.record(segments, span);
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Bodies of `format!`, `assert!`, `vec!`, `write!`...: comma-separated expressions.
        let parser = syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        if let Ok(exprs) = mac.parse_body_with(parser) {
            exprs.iter().for_each(|expr| self.visit_expr(expr));
        }
        visit::visit_macro(self, mac);
    }
}

/// Whether `attrs` has a `#[cfg(...)]` naming `test` other than under `not(...)`: `cfg(test)`,
/// `cfg(all(test, unix))`, also `cfg(any(test, feature = "testkit"))` (test support code).
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| attr.path().is_ident("cfg") && attr.parse_args().is_ok_and(|meta| names_test(&meta)))
}

/// Whether a cfg predicate names `test` other than under `not(...)`.
fn names_test(meta: &syn::Meta) -> bool {
    match meta {
        syn::Meta::Path(path) => path.is_ident("test"),
        syn::Meta::List(list) if !list.path.is_ident("not") => {
            let parser = syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated;
            list.parse_args_with(parser).is_ok_and(|args| args.iter().any(names_test))
        }
        _ => false,
    }
}

/// A leaf of a use tree: its full path, the name it binds (if any) and where it is.
type UseLeaf = (Vec<String>, Option<String>, proc_macro2::Span);

/// The leaves of a use tree (`use a::{b::{self, C}}` has two: `a::b` and `a::b::C`).
fn flatten_use(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
    let leaf = |prefix: &[String], ident: &syn::Ident| -> Vec<String> {
        prefix.iter().cloned().chain((ident != "self").then(|| ident.to_string())).collect()
    };
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let path = leaf(prefix, &n.ident);
            out.push((path.clone(), path.last().cloned(), n.ident.span()));
        }
        syn::UseTree::Rename(r) => {
            let bound = (r.rename != "_").then(|| r.rename.to_string());
            out.push((leaf(prefix, &r.ident), bound, r.ident.span()));
        }
        syn::UseTree::Glob(g) => out.push((prefix.clone(), None, g.star_token.span)),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| flatten_use(t, prefix, out)),
    }
}

impl Model {
    /// `segments`, named in `module`, as an absolute path from the crate root; `None` if outside.
    fn absolute(&self, module: &[String], segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        let mut path = module.to_vec();
        let mut rest = segments;
        if first == "crate" {
            path.clear();
            rest = &segments[1..];
        } else if first == "self" || first == "super" {
            let n = segments.iter().take_while(|s| *s == "self" || *s == "super").count();
            for _ in segments[..n].iter().filter(|s| *s == "super") {
                path.pop()?;
            }
            rest = &segments[n..];
        } else if !self.modules.contains(&[module, &segments[..1]].concat()) {
            return None; // an external crate, a local name, or a name brought in by `use`
        }
        path.extend(rest.iter().cloned());
        Some(path)
    }

    /// The longest prefix of `path` that is a module.
    fn module_of(&self, path: &[String]) -> ModPath {
        (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| self.modules.contains(p)).unwrap_or_default()
    }

    /// The module that `segments`, named in `module`, refers to, seeing through one re-export.
    fn target(&self, module: &[String], segments: &[String]) -> Option<ModPath> {
        let path = self.absolute(module, segments)?;
        let target = self.module_of(&path);
        let reexport = path.get(target.len()).and_then(|name| self.imports.get(&target)?.get(name));
        match reexport.and_then(|source| self.absolute(&target, source)) {
            Some(mut source) => {
                source.extend(path[target.len() + 1..].iter().cloned());
                Some(self.module_of(&source))
            }
            None => Some(target),
        }
    }

    /// Edges between sibling modules, by parent: `(from, to)` child names and one example site.
    fn edges(&self) -> BTreeMap<ModPath, BTreeMap<(String, String), &str>> {
        let mut edges: BTreeMap<ModPath, BTreeMap<(String, String), &str>> = BTreeMap::new();
        for r in &self.references {
            let Some(to) = self.target(&r.module, &r.segments) else { continue };
            let from = &r.module;
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                let edge = (from[common].clone(), to[common].clone());
                edges.entry(from[..common].to_vec()).or_default().entry(edge).or_insert(&r.site);
            }
        }
        edges
    }
}

/// The module tree rooted at `root_file`.
fn model(root: &Path, root_file: &Path) -> Model {
    let mut walker = Walker { root, model: Model::default(), scope: Scope::default() };
    walker.load(Vec::new(), root_file.to_path_buf(), root_file.with_file_name(""));
    walker.model
}

/// The module cycles of the crate rooted at `root_file`, one multi-line description each, sorted.
fn module_cycles(root: &Path, root_file: &Path) -> Vec<String> {
    let model = model(root, root_file);
    let mut cycles = Vec::new();
    for (parent, edges) in model.edges() {
        let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (from, to) in edges.keys() {
            graph.entry(from).or_default().insert(to);
            graph.entry(to).or_default();
        }
        for component in strongly_connected(&graph) {
            let inside = |m: &str| component.contains(&m);
            let parent: Vec<&str> = std::iter::once("crate").chain(parent.iter().map(String::as_str)).collect();
            let mut text = format!("under `{}`: cycle {{{}}}", parent.join("::"), component.join(", "));
            for ((from, to), site) in edges.iter().filter(|((f, t), _)| inside(f) && inside(t)) {
                text.push_str(&format!("\n    {from} -> {to}: {site}"));
            }
            cycles.push(text);
        }
    }
    cycles.sort();
    cycles
}

/// The strongly connected components of more than one node (Tarjan), each sorted.
fn strongly_connected<'g>(graph: &BTreeMap<&'g str, BTreeSet<&'g str>>) -> Vec<Vec<&'g str>> {
    struct Tarjan<'t, 'g> {
        graph: &'t BTreeMap<&'g str, BTreeSet<&'g str>>,
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        components: Vec<Vec<&'g str>>,
    }
    impl<'g> Tarjan<'_, 'g> {
        fn connect(&mut self, node: &'g str) {
            let index = self.index.len();
            self.index.insert(node, index);
            self.low.insert(node, index);
            self.stack.push(node);
            for &next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.connect(next);
                    self.low.insert(node, self.low[node].min(self.low[next]));
                } else if self.stack.contains(&next) {
                    self.low.insert(node, self.low[node].min(self.index[next]));
                }
            }
            if self.low[node] == index {
                let start = self.stack.iter().position(|n| *n == node).expect("a node being visited is on the stack");
                let mut component = self.stack.split_off(start);
                if component.len() > 1 {
                    component.sort_unstable();
                    self.components.push(component);
                }
            }
        }
    }
    let mut tarjan =
        Tarjan { graph, index: HashMap::new(), low: HashMap::new(), stack: Vec::new(), components: Vec::new() };
    for &node in graph.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.connect(node);
        }
    }
    tarjan.components
}

/// Tests of the checker itself, on synthetic crates, so that it cannot silently pass everything.
mod checker_tests {
    use super::*;

    /// A crate with cycles {a, b} and {c, s} at the root and {i1, i2} under `inline`; `c -> r` goes
    /// through a re-export. Not cycles: `p` and its child `q` naming each other, and `r` naming `c`
    /// in test code only (`not_there` does not exist: a test module is not even read). Parsed only.
    const CRATE: &str = r#"
=== src/lib.rs
mod a;
mod b;
mod c;
mod p;
mod r;
#[path = "elsewhere/renamed.rs"]
mod s;
#[cfg(test)]
mod not_there;
pub mod inline {
    pub mod i1 {
        pub struct I1(pub crate::inline::i2::I2);
    }
    pub mod i2 {
        pub fn g(_: &super::i1::I1) {}
    }
}
pub use r::{Exported, Other as Renamed};
=== src/a.rs
use crate::{b::{self, B}};
=== src/b.rs
pub fn f() -> String { format!("{:?}", super::a::A) }
=== src/c.rs
pub fn c() -> crate::Renamed { todo!() }
pub fn d(_: crate::s::deep::D) {}
=== src/r.rs
#[cfg(test)]
fn t(_: crate::c::C) {}
#[cfg(all(unix, any(test, feature = "testkit")))]
use crate::c::C;
impl Other {
    #[cfg(test)]
    fn u(_: crate::c::C) {}
}
=== src/p/mod.rs
mod q;
pub fn p(_: q::Q) {}
=== src/p/q.rs
pub struct Q(pub super::P, pub crate::p::P);
=== src/elsewhere/renamed.rs
mod deep;
#[cfg(not(test))]
pub fn s(_: crate::a::A) {}
=== src/elsewhere/deep.rs
pub fn d(_: crate::c::C) {}
"#;

    /// Writes `files` (path, text) under a new temp directory.
    fn fixture(name: &str, files: &[(&str, String)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("archcheck-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.with_file_name("")).expect("create a temp directory");
            fs::write(path, text).expect("write a temp file");
        }
        dir
    }

    #[test]
    fn cycles_are_found_through_super_macros_reexports_path_attributes_and_inline_modules() {
        let files: Vec<(&str, String)> = CRATE
            .split("=== ")
            .skip(1)
            .map(|f| f.split_once('\n').map(|(path, text)| (path, text.to_owned())).expect("a path line"))
            .collect();
        let dir = fixture("cycles", &files);
        let root_file = dir.join("src/lib.rs");
        let model = model(&dir, &root_file);
        let edges = model.edges();
        let root_edges: BTreeSet<(&str, &str)> =
            edges[&Vec::new()].keys().map(|(f, t)| (f.as_str(), t.as_str())).collect();
        let expected = [("a", "b"), ("b", "a"), ("c", "r"), ("c", "s"), ("s", "a"), ("s", "c")];
        assert_eq!(root_edges, expected.into_iter().collect(), "c -> r is through the re-export `Renamed`");
        assert!(!edges.contains_key(&vec!["p".to_owned()]), "parent/child references are not edges");

        let cycles = module_cycles(&dir, &root_file);
        let headlines: Vec<&str> = cycles.iter().filter_map(|c| c.lines().next()).collect();
        let expected =
            ["under `crate::inline`: cycle {i1, i2}", "under `crate`: cycle {a, b}", "under `crate`: cycle {c, s}"];
        assert_eq!(headlines, expected, "{cycles:#?}");
        assert!(cycles[1].contains("a -> b: src/a.rs:1 `crate::b`"), "{}", cycles[1]);
        assert!(cycles[1].contains("b -> a: src/b.rs:1 `super::a::A`"), "{}", cycles[1]);
        assert!(cycles[2].contains("s -> c: src/elsewhere/deep.rs:1 `crate::c::C`"), "{}", cycles[2]);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn long_files_need_a_reason_and_test_code_does_not_count() {
        let lines = |n: usize| "// code\n".repeat(n);
        let dir = fixture(
            "long",
            &[
                ("src/short.rs", lines(800)),
                ("src/long.rs", lines(801)),
                (
                    "src/reasoned.rs",
                    format!("//! Docs.\n//! Why this file is long: one state machine.\n{}", lines(900)),
                ),
                ("src/tested.rs", format!("{}#[cfg(test)]\n\nmod tests {{\n{}}}\n", lines(700), lines(900))),
                ("src/gated_fn.rs", format!("{}#[cfg(test)]\nfn helper() {{}}\n{}", lines(700), lines(100))),
                ("src/tests.rs", lines(900)),
                ("src/geo/index_tests.rs", lines(900)),
                ("src/tests/helpers.rs", lines(900)),
            ],
        );
        let found = long_files(&dir, &dir.join("src"));
        assert_eq!(found, [("src/gated_fn.rs".to_owned(), 802), ("src/long.rs".to_owned(), 801)]);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn the_domain_may_not_name_workspace_or_runtime_crates() {
        let tree = "dispatch-domain v0.1.0 (/w/domain)\nserde v1.0.228\ndispatch-core v0.1.0 (/w/core)\n\
                    parking_lot_core v0.9.11\ntokio v1.48.0\n[build-dependencies]\ntokio v1.48.0 (*)\n";
        assert_eq!(domain_violations(tree), ["dispatch-core", "tokio"]);
    }
}
