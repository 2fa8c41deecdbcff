// Embed an rpath to libtorch so `gda` runs without LD_LIBRARY_PATH, and keep
// libtorch_cuda linked (without --no-as-needed the linker drops it and CUDA is
// never found). Same approach as tch's own build script.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    } else if os == "macos" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo:rustc-env=GDA_LIBTORCH_VERSION={}", libtorch_version(Path::new(&lib)));
}

/// The wheel keeps its version in torch/version.py, a standalone libtorch in
/// build-version; both sit one level above lib/.
fn libtorch_version(lib: &Path) -> String {
    let Some(root) = lib.parent() else { return "unknown".into() };
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines().filter(|l| l.starts_with("__version__")) {
            let quoted: Vec<&str> = line.split(['\'', '"']).collect();
            if quoted.len() >= 3 {
                return quoted[1].to_string();
            }
        }
    }
    std::fs::read_to_string(root.join("build-version"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
