//! A directory of one test's own under the system's temporary directory, removed when the
//! test passes and kept for a look when it fails.

use std::path::{Path, PathBuf};

use leasehold_store::new_incarnation;

/// A test's own directory; see the module documentation.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new, empty directory.
    pub fn new() -> Scratch {
        let dir = std::env::temp_dir().join("leasehold-tests").join(new_incarnation());
        std::fs::create_dir_all(&dir).expect("creating the test directory");
        Scratch(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to the file `name` in it, and returns the file's path.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("writing the file");
        path.display().to_string()
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
