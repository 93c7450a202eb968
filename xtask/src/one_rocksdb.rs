//! `cargo xtask check-one-rocksdb`: the run command, the test command and clippy share one
//! RocksDB build.
//!
//! RocksDB is compiled (10-16 minutes) by librocksdb-sys's build script when cargo *runs* it:
//! the `run-custom-build` unit. Its output directory is keyed by a hash of that unit and of
//! everything it depends on (the build script, bindgen, cc, ... with their features and
//! profiles). If two commands disagree on any of those units, each compiles RocksDB again: a
//! build dependency that gets debug info in one command and not in another was enough (see
//! `[profile.dev.build-override]` in the root `Cargo.toml`).
//!
//! So this asks cargo for each command's unit graph (`--unit-graph`, which compiles nothing) and
//! compares the units reachable from librocksdb-sys's `run-custom-build` unit: package, target,
//! mode, features, platform, profile (all but its name: `test` and `dev` name the same
//! settings) and the edges between them. librocksdb-sys's own library unit is left out: clippy
//! checks it rather than builds it, and that is seconds of Rust, not RocksDB.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::json::{self, Value};

/// The commands that must share one RocksDB build, each as given to cargo.
pub(crate) const COMMANDS: [(&str, &[&str]); 3] = [
    ("run", &["build", "-p", "cyberid"]),
    ("test", &["test", "--workspace", "--no-run"]),
    ("clippy", &["clippy", "--workspace", "--all-targets"]),
];

const ROCKSDB_PACKAGE: &str = "librocksdb-sys";

/// The units that build RocksDB in one command's graph: for each unit, a short label (package,
/// target, mode) and its canonical description.
pub(crate) type Closure = BTreeMap<String, BTreeSet<String>>;

/// The closure of librocksdb-sys's `run-custom-build` units in a `--unit-graph` document, or
/// `None` when the graph does not build RocksDB at all.
pub(crate) fn rocksdb_closure(unit_graph: &str) -> Result<Option<Closure>, String> {
    let graph = json::parse(unit_graph)?;
    match graph.get("version").and_then(Value::as_usize) {
        Some(1) => {}
        other => {
            return Err(format!(
                "unit graph version {other:?}: this check reads version 1"
            ));
        }
    }
    let units = graph
        .get("units")
        .and_then(Value::as_array)
        .ok_or("unit graph without `units`")?;
    let mut pending: Vec<usize> = units
        .iter()
        .enumerate()
        .filter(|(_, unit)| {
            package_name(unit) == Some(ROCKSDB_PACKAGE)
                && unit.get("mode").and_then(Value::as_str) == Some("run-custom-build")
        })
        .map(|(index, _)| index)
        .collect();
    if pending.is_empty() {
        return Ok(None);
    }
    let mut seen = BTreeSet::new();
    let mut closure = Closure::new();
    while let Some(index) = pending.pop() {
        if !seen.insert(index) {
            continue;
        }
        let unit = units
            .get(index)
            .ok_or_else(|| format!("unit index {index} out of range"))?;
        let mut edges = BTreeSet::new();
        for dependency in unit
            .get("dependencies")
            .and_then(Value::as_array)
            .unwrap_or_default()
        {
            let to = dependency
                .get("index")
                .and_then(Value::as_usize)
                .ok_or("dependency without an index")?;
            let target = units
                .get(to)
                .ok_or_else(|| format!("unit index {to} out of range"))?;
            let name = dependency
                .get("extern_crate_name")
                .and_then(Value::as_str)
                .unwrap_or("");
            edges.insert(format!("{name} = {}", label(target)));
            pending.push(to);
        }
        closure
            .entry(label(unit))
            .or_default()
            .insert(describe(unit, edges));
    }
    Ok(Some(closure))
}

/// Compares the closures of several commands (`None`: that command builds no RocksDB, so it
/// cannot build a second one). `Ok` says what was compared; `Err` lists every difference.
pub(crate) fn compare(closures: &[(&str, Option<Closure>)]) -> Result<String, String> {
    let building: Vec<(&str, &Closure)> = closures
        .iter()
        .filter_map(|(command, closure)| closure.as_ref().map(|closure| (*command, closure)))
        .collect();
    let skipped: Vec<&str> = closures
        .iter()
        .filter(|(_, closure)| closure.is_none())
        .map(|(command, _)| *command)
        .collect();
    let Some(((first_command, first), rest)) = building.split_first() else {
        return Ok("no command builds RocksDB: nothing to share".to_owned());
    };
    let mut differences = String::new();
    for (command, closure) in rest {
        let labels: BTreeSet<&String> = first.keys().chain(closure.keys()).collect();
        for label in labels {
            let (ours, theirs) = (first.get(label), closure.get(label));
            if ours == theirs {
                continue;
            }
            let _ = writeln!(differences, "- {label}");
            let single = |units: Option<&BTreeSet<String>>| {
                let units = units?;
                if units.len() == 1 {
                    json::parse(units.first()?).ok()
                } else {
                    None
                }
            };
            if let (Some(ours), Some(theirs)) = (single(ours), single(theirs)) {
                // One unit on each side: name the fields that differ.
                let mut fields = Vec::new();
                field_differences(&ours, &theirs, "", &mut fields);
                for (field, ours, theirs) in fields {
                    let _ = writeln!(
                        differences,
                        "    {field}: {ours} in {first_command}, {theirs} in {command}"
                    );
                }
                continue;
            }
            for (who, units) in [(*first_command, ours), (*command, theirs)] {
                match units {
                    None => {
                        let _ = writeln!(differences, "    {who}: (absent)");
                    }
                    Some(units) => {
                        for unit in units {
                            let _ = writeln!(differences, "    {who}: {unit}");
                        }
                    }
                }
            }
        }
    }
    if !differences.is_empty() {
        return Err(format!(
            "these commands would compile RocksDB separately; the units that differ:\n\
             {differences}"
        ));
    }
    let mut summary = format!(
        "one RocksDB build ({} units, the same in: {})",
        first.values().map(BTreeSet::len).sum::<usize>(),
        building
            .iter()
            .map(|(command, _)| *command)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !skipped.is_empty() {
        let _ = write!(summary, "; no RocksDB at all in: {}", skipped.join(", "));
    }
    Ok(summary)
}

/// The fields (dotted paths into objects) where `ours` and `theirs` differ, with both values.
fn field_differences(
    ours: &Value,
    theirs: &Value,
    path: &str,
    out: &mut Vec<(String, String, String)>,
) {
    if let (Value::Object(a), Value::Object(b)) = (ours, theirs) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match (a.get(key), b.get(key)) {
                (Some(a), Some(b)) => field_differences(a, b, &path, out),
                (a, b) => {
                    let show = |value: Option<&Value>| {
                        value.map_or("(absent)".to_owned(), Value::to_string)
                    };
                    out.push((path, show(a), show(b)));
                }
            }
        }
    } else if ours != theirs {
        out.push((path.to_owned(), ours.to_string(), theirs.to_string()));
    }
}

/// `librocksdb-sys` from `registry+https://...#librocksdb-sys@0.19.0+11.8.1` (or from the older
/// `librocksdb-sys 0.19.0 (registry+...)` form).
fn package_name(unit: &Value) -> Option<&str> {
    let id = unit.get("pkg_id")?.as_str()?;
    match id.rsplit_once('#') {
        Some((source, name_version)) => {
            let name = name_version
                .split_once('@')
                .map_or(name_version, |(name, _)| name);
            // `path+file:///work/engine#0.1.0`: the name is the last path segment.
            if name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                source.rsplit('/').next()
            } else {
                Some(name)
            }
        }
        None => id.split(' ').next(),
    }
}

fn label(unit: &Value) -> String {
    let field = |outer: &str, inner: Option<&str>| {
        let value = unit.get(outer);
        let value = match inner {
            Some(inner) => value.and_then(|value| value.get(inner)),
            None => value,
        };
        value.and_then(Value::as_str).unwrap_or("?").to_owned()
    };
    format!(
        "{} {} ({})",
        unit.get("pkg_id").and_then(Value::as_str).unwrap_or("?"),
        field("target", Some("name")),
        field("mode", None)
    )
}

/// Everything about a unit that goes into what cargo builds, as canonical JSON: the unit without
/// its profile's name and with its dependencies by label instead of by index.
fn describe(unit: &Value, edges: BTreeSet<String>) -> String {
    let Value::Object(fields) = unit else {
        return unit.to_string();
    };
    let mut fields = fields.clone();
    if let Some(Value::Object(profile)) = fields.get_mut("profile") {
        profile.remove("name");
    }
    fields.insert(
        "dependencies".to_owned(),
        Value::Array(edges.into_iter().map(Value::String).collect()),
    );
    Value::Object(fields).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One unit of a fixture graph: `pkg` is the package name, `debuginfo` the profile's.
    struct Unit {
        pkg: &'static str,
        kind: &'static str,
        mode: &'static str,
        profile: &'static str,
        debuginfo: u32,
        features: &'static [&'static str],
        deps: &'static [usize],
    }

    const fn unit(pkg: &'static str, kind: &'static str, mode: &'static str) -> Unit {
        Unit {
            pkg,
            kind,
            mode,
            profile: "dev",
            debuginfo: 0,
            features: &[],
            deps: &[],
        }
    }

    fn graph(units: &[Unit]) -> String {
        let units: Vec<String> = units
            .iter()
            .map(|u| {
                let features: Vec<String> = u.features.iter().map(|f| format!("{f:?}")).collect();
                let deps: Vec<String> = u
                    .deps
                    .iter()
                    .map(|d| {
                        format!(
                            r#"{{"index": {d}, "extern_crate_name": "dep{d}", "public": false,
                                "noprelude": false}}"#
                        )
                    })
                    .collect();
                let target = if u.kind == "custom-build" { "build-script-build" } else { u.pkg };
                format!(
                    r#"{{"pkg_id": "registry+https://github.com/rust-lang/crates.io-index#{pkg}@1.0.0",
                        "target": {{"kind": ["{kind}"], "crate_types": ["lib"], "name": "{target}",
                                    "src_path": "/src/{pkg}/lib.rs", "edition": "2021"}},
                        "profile": {{"name": "{profile}", "opt_level": "0", "debuginfo": {debuginfo},
                                     "strip": {{"deferred": "None"}}}},
                        "platform": null, "mode": "{mode}", "features": [{features}],
                        "dependencies": [{deps}]}}"#,
                    pkg = u.pkg,
                    kind = u.kind,
                    profile = u.profile,
                    debuginfo = u.debuginfo,
                    mode = u.mode,
                    features = features.join(", "),
                    deps = deps.join(", "),
                )
            })
            .collect();
        format!(
            r#"{{"version": 1, "units": [{}], "roots": [0]}}"#,
            units.join(",\n")
        )
    }

    /// The shape of `cargo build -p cyberid`: the binary, librocksdb-sys's library, its build
    /// script run and compile, and the build script's dependency bindgen.
    fn run_units() -> Vec<Unit> {
        vec![
            Unit {
                deps: &[1],
                ..unit("cyberid", "bin", "build")
            },
            Unit {
                deps: &[2, 5],
                ..unit("librocksdb-sys", "lib", "build")
            },
            Unit {
                features: &["bindgen-runtime"],
                deps: &[3],
                ..unit("librocksdb-sys", "custom-build", "run-custom-build")
            },
            Unit {
                features: &["bindgen-runtime"],
                deps: &[4],
                ..unit("librocksdb-sys", "custom-build", "build")
            },
            unit("bindgen", "lib", "build"),
            unit("libc", "lib", "build"),
        ]
    }

    fn closure(units: &[Unit]) -> Option<Closure> {
        rocksdb_closure(&graph(units)).unwrap()
    }

    #[test]
    fn closure_is_the_build_script_run_and_what_it_depends_on() {
        let closure = closure(&run_units()).unwrap();
        let labels: Vec<&str> = closure.keys().map(String::as_str).collect();
        assert_eq!(
            labels,
            [
                "registry+https://github.com/rust-lang/crates.io-index#bindgen@1.0.0 bindgen (build)",
                "registry+https://github.com/rust-lang/crates.io-index#librocksdb-sys@1.0.0 \
                 build-script-build (build)",
                "registry+https://github.com/rust-lang/crates.io-index#librocksdb-sys@1.0.0 \
                 build-script-build (run-custom-build)",
            ]
        );
        let bindgen = closure.values().next().unwrap().iter().next().unwrap();
        assert!(
            !bindgen.contains(r#""name":"dev""#),
            "profile name kept: {bindgen}"
        );
        assert!(bindgen.contains(r#""debuginfo":0"#), "{bindgen}");
    }

    #[test]
    fn test_and_clippy_shapes_share_the_build() {
        let run = closure(&run_units());
        // `cargo test`: other units, another order, the `test` profile name.
        let mut test = run_units();
        test.push(Unit {
            profile: "test",
            deps: &[0, 1],
            ..unit("cyberid", "bin", "test")
        });
        test.push(Unit {
            debuginfo: 2,
            ..unit("proptest", "lib", "build")
        });
        // `cargo clippy`: librocksdb-sys and libc checked, not built.
        let mut clippy = run_units();
        clippy[1].mode = "check";
        clippy[5].mode = "check";
        let closures = [
            ("run", run),
            ("test", closure(&test)),
            ("clippy", closure(&clippy)),
        ];
        let summary = compare(&closures).unwrap();
        assert_eq!(
            summary,
            "one RocksDB build (3 units, the same in: run, test, clippy)"
        );
    }

    #[test]
    fn a_build_dependency_with_debug_info_is_a_second_build() {
        let mut test = run_units();
        test[4].debuginfo = 2;
        let closures = [("run", closure(&run_units())), ("test", closure(&test))];
        let report = compare(&closures).unwrap_err();
        assert!(
            report.contains("#bindgen@1.0.0 bindgen (build)"),
            "{report}"
        );
        assert!(
            report.contains("    profile.debuginfo: 0 in run, 2 in test\n"),
            "{report}"
        );
        // Only bindgen differs: the units that depend on it are listed by label, not content.
        assert_eq!(report.matches("\n- ").count(), 1, "{report}");
    }

    #[test]
    fn other_features_or_another_dependency_are_a_second_build() {
        let mut features = run_units();
        features[2].features = &["bindgen-runtime", "lz4"];
        let report = compare(&[
            ("run", closure(&run_units())),
            ("clippy", closure(&features)),
        ])
        .unwrap_err();
        assert!(report.contains("(run-custom-build)"), "{report}");
        assert!(
            report.contains(
                r#"features: ["bindgen-runtime"] in run, ["bindgen-runtime","lz4"] in clippy"#
            ),
            "{report}"
        );

        let mut extra = run_units();
        extra.push(unit("cc", "lib", "build"));
        extra[3].deps = &[4, 6];
        let report =
            compare(&[("run", closure(&run_units())), ("test", closure(&extra))]).unwrap_err();
        assert!(
            report.contains("#cc@1.0.0 cc (build)\n    run: (absent)\n    test: {"),
            "{report}"
        );
        assert!(report.contains("    dependencies: "), "{report}");
    }

    #[test]
    fn commands_without_rocksdb_are_skipped() {
        let no_rocksdb = [unit("cyberid", "bin", "build")];
        assert!(closure(&no_rocksdb).is_none());
        assert_eq!(
            compare(&[("run", None), ("test", closure(&run_units()))]).unwrap(),
            "one RocksDB build (3 units, the same in: test); no RocksDB at all in: run"
        );
        assert_eq!(
            compare(&[("run", None)]).unwrap(),
            "no command builds RocksDB: nothing to share"
        );
    }

    #[test]
    fn package_names_from_both_id_forms() {
        for (id, name) in [
            (
                "registry+https://github.com/rust-lang/crates.io-index#librocksdb-sys@0.19.0+11.8.1",
                "librocksdb-sys",
            ),
            (
                "path+file:///work/engine#cyberid-engine@0.1.0",
                "cyberid-engine",
            ),
            ("path+file:///work/engine#0.1.0", "engine"),
            (
                "librocksdb-sys 0.19.0 (registry+https://github.com/rust-lang/crates.io-index)",
                "librocksdb-sys",
            ),
        ] {
            let unit = json::parse(&format!(r#"{{"pkg_id": "{id}"}}"#)).unwrap();
            assert_eq!(package_name(&unit), Some(name), "{id}");
        }
    }

    #[test]
    fn rejects_unknown_versions_and_broken_indexes() {
        assert!(rocksdb_closure(r#"{"version": 2, "units": []}"#).is_err());
        let mut broken = run_units();
        broken[2].deps = &[9];
        assert!(rocksdb_closure(&graph(&broken)).is_err());
    }
}
