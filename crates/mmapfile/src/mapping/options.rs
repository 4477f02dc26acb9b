//! How to open a mapping: [`MapOptions`], pywin32's constructor arguments and
//! the options beyond them, and the opening of files, named blocks, named
//! file mappings and unnamed blocks.

// See mod.rs: lazy error construction keeps success paths free of drop glue.
#![allow(clippy::unnecessary_lazy_evaluations)]

use std::path::{Path, PathBuf};

use super::{check_window, Live, MapFile, Source};
use crate::access::{Access, CreateMode, Space};
use crate::error::{Error, Result};
use crate::name::BlockName;
use crate::os;

/// How to open a mapping: the arguments of pywin32's `mmapfile.mmapfile`,
/// plus the options that go beyond it.
///
/// ```
/// use mmapfile::MapOptions;
///
/// let mut m = MapOptions::new().maximum_size(4096).open()?;
/// m.write(b"hello\nworld\n")?;
/// m.seek(0, 0)?;
/// assert_eq!(m.readline()?, b"hello\n");
/// assert_eq!(m.find(b"world", None, None)?, Some(6));
/// # Ok::<(), mmapfile::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MapOptions {
    file: Option<PathBuf>,
    name: Option<String>,
    maximum_size: u64,
    offset: u64,
    len: u64,
    access: Access,
    create: CreateMode,
    mode: Option<u32>,
    allow_other_owner: bool,
    space: Space,
}

impl MapOptions {
    /// Options for an unnamed block with nothing set yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps the file at `path`. It is created when it does not exist (unless
    /// the access is read-only or copy-on-write). An empty path means no
    /// file, as pywin32's `File=''` does.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// The name of the mapping. Without [`MapOptions::file`], this creates
    /// or opens the named block, or opens the named file mapping, that has
    /// this name. With a file, it creates a *named file mapping*: any
    /// process can then open the same file's bytes by the name alone, as
    /// with Windows' `CreateFileMapping`; if the name exists already, the
    /// existing mapping is opened instead and the file is left alone.
    /// An empty name means no name, as pywin32's `Name=''` does.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// pywin32's `MaximumSize`: the size of the mapping. For a file, 0 means
    /// the file's size and a larger value grows the file. For a new block it
    /// is the block's size; an existing named block keeps its own.
    pub fn maximum_size(mut self, size: u64) -> Self {
        self.maximum_size = size;
        self
    }

    /// pywin32's `FileOffset`: where the view starts. Need not be aligned.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// pywin32's `NumberOfBytesToMap`: the view's length; 0 means to the end.
    pub fn len(mut self, len: u64) -> Self {
        self.len = len;
        self
    }

    /// The access mode (default [`Access::Write`]).
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Whether a named block may be created, opened, or either (default).
    pub fn create(mut self, create: CreateMode) -> Self {
        self.create = create;
        self
    }

    /// Permission bits of a named block this call creates (default `0o600`:
    /// the owner only), set exactly (the umask does not apply).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Allows opening a named block that belongs to another user (refused by
    /// default, so that a block planted by someone else is not trusted).
    pub fn allow_other_owner(mut self, allow: bool) -> Self {
        self.allow_other_owner = allow;
        self
    }

    /// What to do about the storage a new block, or the growth of a file,
    /// needs (default [`Space::Check`]: refuse what cannot fit now). Also
    /// applies to [`MapFile::resize`] of this mapping.
    pub fn space(mut self, space: Space) -> Self {
        self.space = space;
        self
    }

    /// Opens the mapping and maps the view. A failed call leaves nothing
    /// behind: no open handle, and no file or block that it created.
    pub fn open(&self) -> Result<MapFile> {
        if self.mode.is_some_and(|m| m & !0o777 != 0) {
            return Err(Error::InvalidArgument(format!(
                "mode {:#o} has bits other than the permission bits 0o777",
                self.mode.unwrap_or(0)
            )));
        }
        // pywin32 users spell "no file" and "no name" as '' as often as None.
        let file = self.file.as_ref().filter(|p| !p.as_os_str().is_empty());
        let name = match self.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => Some(BlockName::new(name)?),
            None => None,
        };
        if self.create != CreateMode::OpenOrCreate && name.is_none() {
            return Err(Error::InvalidArgument(
                "create= applies to named mappings only (a Name)".into(),
            ));
        }
        let (source, backing, created, size) = match (file, name) {
            (Some(path), None) => {
                let (backing, created) = os::Backing::file(path, self.access)?;
                let (backing, size) = self.sized(backing, created, self.maximum_size)?;
                (Source::File(path.clone()), backing, created, size)
            }
            (Some(path), Some(name)) => self.open_named_file(path, name)?,
            (None, Some(name)) => {
                let (backing, created) = os::Backing::named(
                    &name,
                    self.maximum_size,
                    self.create,
                    self.access,
                    self.permission_bits(),
                    self.allow_other_owner,
                    self.space,
                )?;
                // An existing mapping keeps its size: MaximumSize only sizes a new one.
                let requested = if created { self.maximum_size } else { 0 };
                let source = opened_source(name, &backing);
                let (backing, size) = self.sized(backing, created, requested)?;
                (source, backing, created, size)
            }
            (None, None) => {
                if self.maximum_size == 0 {
                    return Err(Error::InvalidArgument(
                        "an unnamed mapping needs a MaximumSize greater than 0".into(),
                    ));
                }
                let backing = os::Backing::anonymous(self.maximum_size, self.space)?;
                // Abandoning an unnamed block leaves nothing to remove.
                let (backing, size) = self.sized(backing, true, self.maximum_size)?;
                (Source::Anonymous, backing, true, size)
            }
        };
        let live = match Live::map(backing, size, self.offset, self.len, self.access) {
            Ok(live) => live,
            Err(failed) => {
                let (backing, err) = *failed;
                return Err(abandon(backing, created, err));
            }
        };
        Ok(MapFile {
            live: Some(live),
            pos: 0,
            access: self.access,
            source,
            name: self.name.clone().filter(|n| !n.is_empty()),
            created,
            exports: 0,
            space: self.space,
        })
    }
}

impl MapOptions {
    fn permission_bits(&self) -> u32 {
        self.mode.unwrap_or(0o600)
    }

    /// Sizes the mapping of a freshly opened `backing` for `requested`
    /// (see [`mapping_size`]); on failure gives `backing` up, removing it
    /// if this open `created` it, and returns the error.
    fn sized(
        &self,
        mut backing: os::Backing,
        created: bool,
        requested: u64,
    ) -> Result<(os::Backing, u64)> {
        match mapping_size(
            &mut backing,
            requested,
            self.offset,
            self.len,
            self.access,
            self.space,
        ) {
            Ok(size) => Ok((backing, size)),
            Err(err) => Err(abandon(backing, created, err)),
        }
    }

    /// Creates the named file mapping `name` of the file at `path`, or opens
    /// the mapping that has the name already (a block or another file's
    /// mapping: the name wins over the file, as on Windows, and the file is
    /// then not touched). Returns the source, the backing object, whether
    /// this call created the mapping, and the mapping's size.
    fn open_named_file(
        &self,
        path: &Path,
        name: BlockName,
    ) -> Result<(Source, os::Backing, bool, u64)> {
        let mode = self.permission_bits();
        loop {
            if self.create != CreateMode::CreateOnly {
                match os::Backing::named(
                    &name,
                    0,
                    CreateMode::OpenOnly,
                    self.access,
                    mode,
                    self.allow_other_owner,
                    self.space,
                ) {
                    Ok((backing, _)) => {
                        let (backing, size) = self.sized(backing, false, 0)?;
                        let source = opened_source(name, &backing);
                        return Ok((source, backing, false, size));
                    }
                    Err(err) if self.create == CreateMode::OpenOnly || !is_not_found(&err) => {
                        return Err(err)
                    }
                    Err(_) => {}
                }
            }
            let (backing, file_created) = os::Backing::file(path, self.access)?;
            let (mut backing, size) = self.sized(backing, file_created, self.maximum_size)?;
            match backing.publish_name(&name, size, mode) {
                Ok(true) => {
                    let source = Source::NamedFile {
                        name,
                        path: path.to_path_buf(),
                    };
                    return Ok((source, backing, true, size));
                }
                // Another process gave the name to a mapping meanwhile: give
                // up the file (removing it if this call made it) and open
                // that mapping, as the name wins.
                Ok(false) => {
                    let taken = abandon(backing, file_created, os::name_taken());
                    if self.create == CreateMode::CreateOnly {
                        return Err(taken);
                    }
                }
                Err(err) => return Err(abandon(backing, file_created, err)),
            }
        }
    }
}

/// What a mapping opened by its name is: a named file mapping where the OS
/// tells the file, else a named block.
fn opened_source(name: BlockName, backing: &os::Backing) -> Source {
    match backing.file_path() {
        Some(path) => Source::NamedFile { name, path },
        None => Source::Named(name),
    }
}

/// Whether `err` says that a name (or file) does not exist.
fn is_not_found(err: &Error) -> bool {
    matches!(err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// Gives up a backing object after a failed open, removing it if this open
/// created it, and returns the error to report.
fn abandon(backing: os::Backing, created: bool, err: Error) -> Error {
    if created {
        backing.abandon();
    }
    err
}

/// The size of the mapping object for a requested `MaximumSize`, growing the
/// backing object when the request is larger.
///
/// The window `offset`/`len` is checked before anything grows, so that a call
/// refused for a bad window leaves the file or block as it found it.
pub(super) fn mapping_size(
    backing: &mut os::Backing,
    requested: u64,
    offset: u64,
    len: u64,
    access: Access,
    space: Space,
) -> Result<u64> {
    // File sizes and offsets are signed 64-bit on every OS we support.
    if requested > i64::MAX as u64 {
        return Err(Error::InvalidArgument(format!(
            "MaximumSize {requested} is larger than any file or block can be"
        )));
    }
    let current = backing.len()?;
    let size = if requested == 0 { current } else { requested };
    if size == 0 {
        return Err(Error::InvalidArgument(
            "Specified file is empty, and no mapping size given".into(),
        ));
    }
    check_window(size, offset, len)?;
    if requested > current {
        if !access.writes_backing() {
            return Err(Error::InvalidArgument(format!(
                "MaximumSize {requested} is larger than the object ({current} bytes), \
                 which this access mode cannot grow"
            )));
        }
        if !backing.can_grow() {
            return Err(Error::InvalidArgument(format!(
                "a named block cannot grow (it is {current} bytes): its memory is sized \
                 once, as a section is on Windows (a System V segment on Linux, a \
                 shared-memory object on macOS)"
            )));
        }
        backing.grow(requested, space)?;
    }
    Ok(size)
}
