//! The image as a COPY, ADD or WORKDIR step changes it: paths resolved
//! through its symlinks, directories made, and the layer entries that
//! make the change.

use super::join;
use crate::fs::layer::{Content, LayerEntry};
use crate::fs::{self as tree, Kind, Manifest, Meta, PathError};

/// The image as a step changes it, and the layer entries that change it.
pub(crate) struct Layout {
    view: Manifest,
    pub out: Vec<LayerEntry>,
}

impl Layout {
    pub fn new(m: Manifest) -> Layout {
        Layout {
            view: m,
            out: Vec::new(),
        }
    }

    /// What `path` is (the root is a directory).
    pub fn kind(&self, path: &str) -> Option<Kind> {
        if path.is_empty() {
            return Some(Kind::Dir);
        }
        self.view.get(path).map(|m| m.kind)
    }

    /// `path` with every symlink followed, inside the image.
    pub fn resolve(&self, path: &str) -> Result<String, PathError> {
        tree::resolve(&self.view, path, true)
    }

    /// Makes `path` (already resolved) and its missing parents, 0755 and
    /// owned by `owner`; a parent that is not a directory is an error.
    pub fn mkdir_all(&mut self, path: &str, owner: (u32, u32)) -> Result<(), PathError> {
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur = join(&cur, part);
            match self.kind(&cur) {
                Some(Kind::Dir) => {}
                Some(found) => return Err(PathError::NotADirectory { path: cur, found }),
                None => {
                    let meta = Meta::dir(0o755).owned_by(owner.0, owner.1);
                    self.push(&cur, meta, Content::None);
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, path: &str, meta: Meta, content: Content) {
        if meta.kind != Kind::Dir {
            crate::fs::layer::remove_under(&mut self.view, path, true);
        }
        self.view.insert(path.to_string(), meta.clone());
        self.out.push(LayerEntry {
            path: path.to_string(),
            meta,
            content,
            whiteout: false,
        });
    }

    /// Copies one entry to `path` as fsutil does: a directory goes only
    /// where there is a directory or nothing (an existing one takes the
    /// source's mode and owner, unless it is the `top` of the copy); a
    /// file or symlink replaces anything but a directory.
    pub fn put(
        &mut self,
        path: &str,
        meta: Meta,
        content: Content,
        top: bool,
    ) -> Result<(), PathError> {
        let have = self.kind(path);
        match (meta.kind, have) {
            (Kind::Dir, Some(Kind::Dir)) if top || path.is_empty() => Ok(()),
            (Kind::Dir, Some(Kind::Dir)) | (Kind::Dir, None) => {
                self.push(path, meta, content);
                Ok(())
            }
            (Kind::Dir, Some(found)) => Err(PathError::DirectoryOverOther {
                path: path.to_string(),
                found,
            }),
            (_, Some(Kind::Dir)) => Err(PathError::OverDirectory {
                path: path.to_string(),
                with: meta.kind,
            }),
            _ => {
                self.push(path, meta, content);
                Ok(())
            }
        }
    }

    /// Extracts one archive entry (its path relative to the archive's root)
    /// under `dest` as Docker's untar does: symlinks in its parents are
    /// followed, the entry itself replaces what is there (a directory over
    /// a directory only updates it), and missing parents are made 0755 and
    /// owned by root.
    pub fn extract(&mut self, dest: &str, e: LayerEntry) -> Result<String, PathError> {
        let full = join(dest, &e.path);
        let parent = self.resolve(tree::parent_of(&full))?;
        self.mkdir_all(&parent, (0, 0))?;
        let path = join(&parent, tree::base_name(&full));
        self.push(&path, e.meta, e.content);
        Ok(path)
    }
}
