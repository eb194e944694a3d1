"""The content checks PVE runs before a download lands (qemu-img info on untrusted images, the OVA
listing), end to end: proxmoxer as the client, nginx as the origin. tests/run runs this file a
second time with another qemu-img version bind-mounted over /usr/bin/qemu-img, since what
qemu-img reports about an image differs between versions and the refusals must not."""

import re

import pytest

from helpers import assert_nothing_new, blocking, post_download, tree


def test_import_qcow2_with_backing_file_rejected(daemon, prox, origin):
    store = daemon.storage_path()
    before = tree(store)
    upid = post_download(prox, url=origin.file_url("disk-backed.qcow2"), content="import",
                         filename="disk-backed.qcow2")
    st = blocking(prox, upid)
    assert st["exitstatus"].startswith("failed to verify file: "), st
    assert "backing file" in st["exitstatus"], st
    assert_nothing_new(before, store)


def test_iso_that_is_a_backed_qcow2_rejected(daemon, prox, origin):
    """iso content is checked with qemu-img auto-detect and untrusted checks (assert_iso_content)."""
    store = daemon.storage_path()
    before = tree(store)
    upid = post_download(prox, url=origin.file_url("disk-backed.qcow2"), content="iso", filename="backed.iso")
    st = blocking(prox, upid)
    assert st["exitstatus"].startswith("failed to verify file: "), st
    assert "backing file" in st["exitstatus"], st
    assert_nothing_new(before, store)


def test_import_raw_named_qcow2_rejected(daemon, prox, origin):
    """qemu-img info -f qcow2 on raw bytes fails: the file must not land."""
    store = daemon.storage_path()
    before = tree(store)
    upid = post_download(prox, url=origin.file_url("small.iso"), content="import", filename="notreally.qcow2")
    st = blocking(prox, upid)
    assert st["exitstatus"].startswith("failed to verify file: "), st
    assert_nothing_new(before, store)


def test_ova_without_ovf_rejected(daemon, prox, origin):
    store = daemon.storage_path()
    before = tree(store)
    upid = post_download(prox, url=origin.file_url("noovf.ova"), content="import", filename="noovf.ova")
    st = blocking(prox, upid)
    assert st["exitstatus"] == "failed to verify file: ova archive has no .ovf file inside", st
    assert_nothing_new(before, store)


def refused(st, what):
    """A task error for an untrusted image: PVE's prefix, the temp file's path, PVE's text."""
    assert re.fullmatch(r"failed to verify file: /\S+: %s" % re.escape(what), st["exitstatus"]), st


# A descriptor whose one FLAT extent is a host file, and a qcow2 whose data lives in another file:
# both must be refused whatever qemu-img reports, and whatever the file is called.
HOSTILE = [
    ("host-extent.vmdk", "import", "host.vmdk", "multiple children or extents are not allowed!"),
    ("host-extent.vmdk", "iso", "host.iso", "multiple children or extents are not allowed!"),
    ("datafile.qcow2", "import", "datafile.qcow2", "'data-file' references are not allowed!"),
    ("datafile.qcow2", "iso", "datafile.iso", "'data-file' references are not allowed!"),
]


@pytest.mark.parametrize("src,content,filename,what", HOSTILE, ids=["%s-as-%s" % (c[0], c[1]) for c in HOSTILE])
def test_image_reading_host_files_refused(daemon, prox, origin, src, content, filename, what):
    store = daemon.storage_path()
    before = tree(store)
    upid = post_download(prox, url=origin.file_url(src), content=content, filename=filename)
    refused(blocking(prox, upid), what)
    assert_nothing_new(before, store)
