package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File modes: keys readable by their owner only; certificates are public.
const (
	dirMode  fs.FileMode = 0o700
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
)

// ensureDir creates dir with mode 0700 when it is missing. An existing
// directory keeps its mode: the keys in it are 0600 whatever the directory
// allows, and changing the mode of a directory the operator chose (it
// might be a shared one) is not this package's call.
func ensureDir(dir string) error {
	info, err := os.Stat(dir)
	switch {
	case err == nil:
		if !info.IsDir() {
			return fmt.Errorf("pki: %s exists and is not a directory", dir)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return fmt.Errorf("pki: create %s: %w", dir, err)
		}
		// Explicitly, because MkdirAll's mode passes through the umask.
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("pki: chmod %s: %w", dir, err)
		}
		return nil
	default:
		return fmt.Errorf("pki: stat %s: %w", dir, err)
	}
}

// fileWriter writes a sequence of files, stopping at the first error and
// remembering what it wrote so that a failed Init can be undone.
type fileWriter struct {
	written []string
	err     error
}

// pair writes a key and then its certificate, each by rename. The key goes
// first so that a reader that sees the new certificate also sees its key;
// a reader in between sees a new key with the old certificate, which the
// loaders reject as a mismatch and the config reloader rides out.
func (w *fileWriter) pair(files Files, pair issued) {
	w.atomic(files.Key, pair.keyPEM, keyMode)
	w.atomic(files.Cert, pair.certPEM, certMode)
}

// exclusive creates path, failing if it exists.
func (w *fileWriter) exclusive(path string, data []byte, mode fs.FileMode) {
	if w.err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		w.err = fmt.Errorf("pki: %s appeared while writing the CA (another init running?): %w", path, ErrCAExists)
		return
	}
	if err != nil {
		w.err = fmt.Errorf("pki: create %s: %w", path, err)
		return
	}
	w.written = append(w.written, path)
	w.err = writeAndClose(f, data, mode)
}

// atomic replaces path by writing a temporary file in the same directory
// and renaming it over path, so readers see the old or the new content,
// never a partial file.
func (w *fileWriter) atomic(path string, data []byte, mode fs.FileMode) {
	if w.err != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		w.err = fmt.Errorf("pki: create temporary file for %s: %w", path, err)
		return
	}
	tmp := f.Name()
	if err := writeAndClose(f, data, mode); err != nil {
		_ = os.Remove(tmp)
		w.err = err
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		w.err = fmt.Errorf("pki: replace %s: %w", path, err)
		return
	}
	w.written = append(w.written, path)
}

// removeWritten deletes every file written so far (best effort: this runs
// on a path that already returns an error).
func (w *fileWriter) removeWritten() {
	for _, path := range w.written {
		_ = os.Remove(path)
	}
	w.written = nil
}

// writeAndClose sets the mode explicitly (the umask could otherwise
// narrow a certificate's 0644 or CreateTemp's 0600 would stay), writes,
// syncs so a crash cannot leave a renamed but empty file, and closes.
func writeAndClose(f *os.File, data []byte, mode fs.FileMode) error {
	err := f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", f.Name(), err)
	}
	return nil
}
