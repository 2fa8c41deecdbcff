//! The project's one random number generator: counter-based, so every draw
//! is a pure function of (seed, counter), never of libtorch's global RNG.

/// SplitMix64: a counter-based generator, so the batch of any step is a pure
/// function of (seed, step) and a resumed run draws exactly the batches an
/// uninterrupted one would.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A counter-based generator: SplitMix64 of a counter. Streams depend only
/// on their seed, never on libtorch's global RNG, device or version.
pub struct Rng(u64);

impl Rng {
    /// A stream for `seed` (hashed first, so nearby seeds start far apart).
    pub fn new(seed: u64) -> Rng {
        Rng(splitmix64(seed))
    }

    /// A stream whose counter starts at `counter` itself.
    pub fn from_counter(counter: u64) -> Rng {
        Rng(counter)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `k` distinct values of [0, n), in random order (partial Fisher–Yates).
    pub fn distinct(&mut self, k: usize, n: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }
}
