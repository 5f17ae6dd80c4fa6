package chaos

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/deployctl/deployctl/controller"
)

func mustTagRegistry(t *testing.T) *TagRegistry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := StartTagRegistry(context.Background(), ln, "chaos/app")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg.Close(); err != nil {
			t.Error(err)
		}
	})
	return reg
}

func TestTagRegistryResolvesEveryTagToTheOneImage(t *testing.T) {
	reg := mustTagRegistry(t)
	ctx := context.Background()
	for _, v := range []int{1, 7, 123456} {
		pin, err := controller.RegistryResolver{}.Resolve(ctx, reg.Image(v))
		if err != nil {
			t.Fatalf("resolve %s: %v", reg.Image(v), err)
		}
		if pin.Digest != reg.Digest() || pin.Ref != reg.Addr()+"/chaos/app@"+reg.Digest() {
			t.Fatalf("resolve %s: %+v, want digest %s", reg.Image(v), pin, reg.Digest())
		}
		if got, err := ValueOfImage(reg.Image(v)); err != nil || got != v {
			t.Fatalf("ValueOfImage(%s) = %d, %v", reg.Image(v), got, err)
		}
	}
	// Another repository is not served: the registry is not a wildcard.
	if _, err := (controller.RegistryResolver{}).Resolve(ctx, reg.Addr()+"/other/app:w1"); !errors.Is(err, controller.ErrImageUnresolvable) {
		t.Fatalf("another repository resolved: %v", err)
	}
}

func TestValueOfImageRefusesOtherReferences(t *testing.T) {
	for _, image := range []string{
		"127.0.0.1:5000/chaos/app",
		"127.0.0.1:5000/chaos/app:v1",
		"127.0.0.1:5000/chaos/app:w",
		"127.0.0.1:5000/chaos/app:w0",
		"127.0.0.1:5000/chaos/app:w-3",
		"127.0.0.1:5000/chaos/app:wx",
		"127.0.0.1:5000/chaos/app@sha256:0123",
		"host:w12/chaos/app",
	} {
		if v, err := ValueOfImage(image); !errors.Is(err, ErrNotWorkloadImage) {
			t.Errorf("ValueOfImage(%q) = %d, %v; want %v", image, v, err, ErrNotWorkloadImage)
		}
	}
}
