"""The content checks PVE runs before a download lands (qemu-img info on untrusted images, the OVA
listing), end to end: proxmoxer as the client, nginx as the origin. tests/run runs this file a
second time with another qemu-img version bind-mounted over /usr/bin/qemu-img, since what
qemu-img reports about an image differs between versions and the refusals must not."""

import re

import pytest

from helpers import assert_nothing_new, blocking, post_download, tree

TMP = r"/\S+"

# (source file, content, filename, the task's exit status as a regex; TMP is the temp file).
# Images that read host files must be refused whatever qemu-img reports, and whatever the file
# is called: a backing file, a VMDK descriptor whose one FLAT extent is /etc/passwd, a qcow2
# whose data lives in another file.
REFUSED = [
    ("disk-backed.qcow2", "import", "disk-backed.qcow2", "backing file not allowed for untrusted image '%s'!" % TMP),
    ("disk-backed.qcow2", "iso", "backed.iso", "backing file not allowed for untrusted image '%s'!" % TMP),
    ("host-extent.vmdk", "import", "host.vmdk", "%s: multiple children or extents are not allowed!" % TMP),
    ("host-extent.vmdk", "iso", "host.iso", "%s: multiple children or extents are not allowed!" % TMP),
    ("datafile.qcow2", "import", "datafile.qcow2", "%s: 'data-file' references are not allowed!" % TMP),
    ("datafile.qcow2", "iso", "datafile.iso", "%s: 'data-file' references are not allowed!" % TMP),
    # qemu-img info -f qcow2 on raw bytes fails, and PVE dies with its words.
    ("small.iso", "import", "notreally.qcow2", "qemu-img: Could not open '%s': Image is not in qcow2 format" % TMP),
    ("noovf.ova", "import", "noovf.ova", re.escape("ova archive has no .ovf file inside")),
]


@pytest.mark.parametrize(
    "src,content,filename,why", REFUSED, ids=["%s-as-%s" % (c[2], c[1]) for c in REFUSED]
)
def test_refused_content_leaves_nothing(daemon, prox, origin, src, content, filename, why):
    store = daemon.storage_path()
    before = tree(store)
    upid = post_download(prox, url=origin.file_url(src), content=content, filename=filename)
    st = blocking(prox, upid)
    assert re.fullmatch("failed to verify file: " + why, st["exitstatus"]), st
    assert_nothing_new(before, store)
