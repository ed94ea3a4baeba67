//! The shape of the code, checked: crates depend only on lower layers, and no module of a crate
//! imports a module that imports it back (ARCHITECTURE.md's layering, kept by a test rather than
//! by review).
//!
//! Modules are the files of a crate's `src/` (`a.rs` and `a/mod.rs` are `a`, `a/b.rs` is `a::b`);
//! an import is a `crate::` path in code (comments and doc links are not imports). A module and
//! its own submodules are one unit of code (a parent declares its children; a kernel's per-ISA
//! files use their parent's types), so edges between a module and its ancestors are not counted;
//! every other pair of modules must not reach each other both ways.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Layer of each crate of the workspace: a crate may depend on crates of lower layers only.
const LAYERS: [(&str, u32); 7] = [
    ("shared", 0),
    ("decode", 0),
    ("views", 1),
    ("datasets", 1),
    ("loader", 2),
    ("trainer", 2),
    ("barlow-tests", 3),
];

fn layer(name: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|&(_, l)| l)
}

/// The workspace crates a manifest's `[dependencies]` names (dev-dependencies excluded).
fn workspace_dependencies(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or("");
        if in_deps && layer(name).is_some() {
            deps.push(name.to_string());
        }
    }
    deps
}

#[test]
fn crates_depend_only_on_lower_layers() {
    let root = workspace();
    let members = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut seen = 0;
    for (dir, name) in [
        ("shared", "shared"),
        ("decode", "decode"),
        ("views", "views"),
        ("datasets", "datasets"),
        ("loader", "loader"),
        ("trainer", "trainer"),
        ("tests", "barlow-tests"),
    ] {
        assert!(
            members.contains(&format!("\"{dir}\"")),
            "{dir} is not a workspace member: update LAYERS"
        );
        let manifest = std::fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
        let own = layer(name).unwrap();
        for dep in workspace_dependencies(&manifest) {
            let theirs = layer(&dep).unwrap();
            assert!(
                theirs < own,
                "{name} (layer {own}) depends on {dep} (layer {theirs}): only lower layers may be used"
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 10,
        "the manifests' dependencies were not found ({seen})"
    );
}

/// Module path of a source file relative to `src/` (`None` for a binary's root).
fn module_of(rel: &Path) -> Option<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop()?;
    match file.as_str() {
        "lib.rs" if parts.is_empty() => return Some(String::new()),
        "main.rs" if parts.is_empty() => return None,
        "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_string()),
    }
    Some(parts.join("::"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::a::b::...` paths in a file's code (comments stripped).
fn crate_paths(source: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue; // `$crate::` or an identifier ending in "crate"
            }
            let path: Vec<String> = rest
                .split("::")
                .map(|seg| {
                    seg.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|seg| !seg.is_empty())
                .collect();
            if !path.is_empty() {
                paths.push(path);
            }
        }
    }
    paths
}

/// Each module of the crate at `src` and the modules it imports.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .filter_map(|f| Some((module_of(f.strip_prefix(src).unwrap())?, f.clone())))
        .collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let source = std::fs::read_to_string(file).unwrap();
        let mut targets = BTreeSet::new();
        for path in crate_paths(&source) {
            // The longest prefix of the path that is a module of the crate.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|p| modules.contains_key(p));
            if let Some(target) = target {
                let related = |a: &str, b: &str| a.is_empty() || b.starts_with(&format!("{a}::"));
                if target != *module && !related(&target, module) && !related(module, &target) {
                    targets.insert(target);
                }
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// A cycle of the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for krate in ["shared", "decode", "views", "datasets", "loader", "trainer"] {
        let graph = import_graph(&workspace().join(krate).join("src"));
        assert!(graph.len() > 1, "{krate}: no modules found");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{krate}: import cycle {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_a_cycle_and_ignores_comments_and_parents() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert!(find_cycle(&graph(&[("sink", "pipeline"), ("pipeline", "sink")])).is_some());
    assert!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).is_some());
    assert!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_none());
    let paths = crate_paths(
        "use crate::sink::{BatchSink, Flow};\n//! see [`crate::pipeline`]\nlet x = $crate::simd::level(); // crate::live\n",
    );
    assert_eq!(paths, vec![vec!["sink".to_string()]]);
    assert_eq!(
        module_of(Path::new("ring_sink/restart.rs")).as_deref(),
        Some("ring_sink::restart")
    );
    assert_eq!(
        module_of(Path::new("color/mod.rs")).as_deref(),
        Some("color")
    );
    assert_eq!(module_of(Path::new("main.rs")), None);
}
