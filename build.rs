// Embed an rpath to libtorch so `gda` runs without LD_LIBRARY_PATH, and keep
// libtorch_cuda linked (without --no-as-needed the linker drops it and CUDA is
// never found). Same approach as tch's own build script.
//
// Also compiles src/dist/shim.cpp, the extern "C" layer over libtorch's c10d
// (distributed training), and src/model/kernels.cpp, the fused CPU kernels,
// against the same libtorch's headers (see `build_shim`, `build_kernels`).
use std::path::{Path, PathBuf};

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
    build_shim(Path::new(&lib));
    build_kernels(Path::new(&lib));
}

/// The fused CPU kernels. On x86-64 they are compiled for AVX2 + FMA
/// (at::vec's 256-bit path, as ATen's own AVX2 kernels); gda calls them only
/// where the CPU has both (`model::fused::available`).
fn build_kernels(lib: &Path) {
    println!("cargo:rerun-if-changed=src/model/kernels.cpp");
    let mut build = libtorch_cpp(lib, "src/model/kernels.cpp");
    build.opt_level(3);
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        build.define("CPU_CAPABILITY", "AVX2").define("CPU_CAPABILITY_AVX2", None).flag("-mavx2").flag("-mfma");
    } else {
        build.define("CPU_CAPABILITY", "DEFAULT");
    }
    // at::parallel_for's OpenMP region is compiled into this file, so it
    // needs -fopenmp and the libgomp the wheel ships beside libtorch (the one
    // ATen's own threads run on); without it the kernels run on one thread.
    let gomp = lib.join("libgomp.so.1");
    if gomp.is_file() {
        build.flag("-fopenmp");
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-l:libgomp.so.1");
    }
    build.compile("gda_kernels");
}

/// The c10d shim. The torch wheel ships c10d's headers and Gloo compiled
/// into libtorch_cpu, but not Gloo's headers: those come from Debian's
/// libgloo-dev (scripts/setup.sh installs it) or GLOO_INCLUDE. GDA_NCCL=1
/// (scripts/gpu/build.sh) adds the NCCL backend, which needs the wheel's
/// nvidia/nccl and nvidia/cu13 headers plus the nvidia-cuda-cccl and
/// nvidia-cuda-crt header wheels (GDA_CUDA_INCLUDES: more include folders,
/// separated by ':').
fn build_shim(lib: &Path) {
    println!("cargo:rerun-if-changed=src/dist/shim.cpp");
    for var in ["GLOO_INCLUDE", "GDA_NCCL", "GDA_CUDA_INCLUDES", "LIBTORCH_CXX11_ABI"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let Some(root) = lib.parent() else { panic!("libtorch lib folder {} has no parent", lib.display()) };
    let include = root.join("include");
    let c10d = include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp");
    if !c10d.is_file() {
        panic!("gda needs libtorch's c10d headers for distributed training, but {} is missing: use the PyPI torch wheel (scripts/setup.sh) or a full libtorch", c10d.display());
    }
    let mut gloo_dirs: Vec<PathBuf> = std::env::var("GLOO_INCLUDE").ok().map(PathBuf::from).into_iter().collect();
    gloo_dirs.extend(["/usr/include", "/usr/local/include"].map(PathBuf::from));
    let Some(gloo) = gloo_dirs.iter().find(|d| d.join("gloo/config.h").is_file()) else {
        panic!(
            "gda's distributed training needs Gloo's C++ headers (gloo/config.h), found in none of {}: install the Debian/Ubuntu package libgloo-dev (scripts/setup.sh does: apt-get install libgloo-dev, as root), or point GLOO_INCLUDE at a folder holding gloo/",
            gloo_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    };
    let mut build = libtorch_cpp(lib, "src/dist/shim.cpp");
    build.include(gloo).define("USE_C10D_GLOO", None);
    if std::env::var("GDA_NCCL").as_deref() == Ok("1") {
        build.define("USE_C10D_NCCL", None).define("USE_CUDA", None);
        // The wheel's own CUDA (cu13) and NCCL headers, beside torch/.
        let nvidia = root.parent().map(|p| p.join("nvidia")).unwrap_or_default();
        let nccl = nvidia.join("nccl/include");
        if !nccl.join("nccl.h").is_file() {
            panic!(
                "GDA_NCCL=1, but {} has no nccl.h: build against a CUDA torch wheel (scripts/gpu/build.sh)",
                nccl.display()
            );
        }
        build.include(nccl);
        for cu in ["cu13", "cu12"].map(|c| nvidia.join(c).join("include")).into_iter().filter(|d| d.is_dir()) {
            build.include(cu);
        }
        for dir in std::env::var("GDA_CUDA_INCLUDES").unwrap_or_default().split(':').filter(|d| !d.is_empty()) {
            build.include(dir);
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-lc10_cuda");
    }
    build.compile("gda_dist_shim");
}

/// A C++20 build of `file` against libtorch's headers, with the C++ ABI the
/// libtorch uses; both of gda's C++ files start from it.
fn libtorch_cpp(lib: &Path, file: &str) -> cc::Build {
    println!("cargo:rerun-if-changed=src/ffi_guard.h");
    let Some(root) = lib.parent() else { panic!("libtorch lib folder {} has no parent", lib.display()) };
    let include = root.join("include");
    // torch-sys does not pass on the ABI it detected; every PyPI wheel since
    // torch 2.7 uses the C++11 ABI, and LIBTORCH_CXX11_ABI is torch-sys's own
    // override for a libtorch that does not.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .file(file)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        // libtorch's headers are not warning-clean; gda's own C++ is small.
        .warnings(false)
        .flag_if_supported("-Wno-deprecated-declarations");
    build
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
