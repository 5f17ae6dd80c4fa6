package deployer

import (
	"errors"
	"fmt"
	"syscall"
)

// mountTmpfs mounts a tmpfs of size bytes at dir: mode 0700, no exec,
// suid or device files. A tmpfs lives in memory (and swap, which hosts
// that keep secrets should not have or should encrypt).
func mountTmpfs(dir string, size int) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOEXEC|syscall.MS_NOSUID|syscall.MS_NODEV,
		fmt.Sprintf("size=%d,mode=0700", size))
}

// unmountTmpfs unmounts dir; a dir that is no mount point is no error.
func unmountTmpfs(dir string) error {
	err := syscall.Unmount(dir, syscall.MNT_DETACH)
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	return err
}
