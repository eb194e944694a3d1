"""Network boot: boot configs, the images they fit and the hosts that boot them (validated as
the pxemanager seed says, plus the image's El Torito entry for the host's firmware), iPXE
scripts by MAC, configs by source address in a network namespace, and a real boot: QEMU's iPXE
sanboots Debian's ipxe.iso from the daemon, and the booted image asks the daemon again."""

import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest
import requests

from conftest import NODE, SECRETS, TOKENS, _daemon_fixture, free_port
from helpers import assert_param_error, enc, wait_until

IPXE_ISO = "/usr/lib/ipxe/ipxe.iso"
MAC = "52:54:00:12:34:56"
BOOT = "/cluster/isolib/boot"


def boot_setup(http_listen):
    def prepare(d):
        d.plain_port = free_port()
        with open(d.config, "a") as f:
            f.write('http-listen = "%s:%d"\n' % (http_listen, d.plain_port))
        d.plain_host = http_listen
    return prepare


@pytest.fixture
def booter(request):
    yield from _daemon_fixture(request, "isolib-boot-", boot_setup("127.0.0.1"))


def add(daemon, src, name=None):
    """A local file into storage `local` with its record (`isolib add`), made public."""
    args = [str(daemon.binary), "add", "--config", str(daemon.config), str(src), "--storage", "local"]
    if name:
        args += ["--filename", name]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    volid = out.stdout.strip()
    return volid


def put_volume(api, volid, **params):
    return api.request("PUT", "/nodes/%s/storage/local/content/%s" % (NODE, enc(volid)), data=params)


def cli(daemon, *args):
    out = subprocess.run([str(daemon.binary), *args, "--url", "https://127.0.0.1:%d" % daemon.port, "--insecure",
                          "--token", "%s=%s" % (TOKENS["root"], SECRETS["root"])],
                         capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


def test_configs_images_and_hosts_validated_as_the_seed_says(booter, origin, tmp_path):
    api = booter.api("root")
    debian = add(booter, origin.files / "debian-like.iso")  # El Torito BIOS and UEFI
    plain = add(booter, origin.files / "plain.iso")  # no El Torito at all
    ks = tmp_path / "ks.cfg"
    ks.write_text("text\nreboot\n")
    rc, _, err = cli(booter, "boot", "config", "add", "fedora-server", "--format", "kickstart", "--file", str(ks),
                     "--description", "server install")
    assert rc == 0, err
    r = api.post(BOOT + "/configs", data={"name": "coreos-builder", "format": "ignition",
                                          "files": json.dumps({"config.ign": '{"ignition":{"version":"3.4.0"}}'})})
    assert r.status_code == 200, r.text
    assert_param_error(api.post(BOOT + "/configs", data={"name": "x", "format": "kickstart", "files": "[]"}),
                       {"files": "not a JSON object of file name to content: invalid type: sequence, "
                                 "expected a map at line 1 column 0"})
    assert_param_error(api.post(BOOT + "/configs", data={"name": "x", "format": "bogus", "files": "{}"}),
                       {"format": "value 'bogus' does not have a value in the enumeration 'ignition, kickstart, "
                                  "cloud-init, autoinstall, preseed, raw'"})
    assert_param_error(api.post(BOOT + "/configs", data={"name": "fedora-server", "format": "raw",
                                                         "files": json.dumps({"a": "b"})}),
                       {"name": "boot config 'fedora-server' already exists"})

    # An image lists the configs that fit it; each must exist.
    assert_param_error(put_volume(api, debian, **{"boot-configs": "coreos-builder,nope"}),
                       {"boot-configs": "boot config 'nope' does not exist"})
    assert put_volume(api, debian, **{"boot-configs": "coreos-builder"}).status_code == 200
    info = api.ok_data(api.get("/nodes/%s/storage/local/content/%s" % (NODE, enc(debian))))
    assert info["boot-configs"] == ["coreos-builder"]
    assert info["iso"]["boot"] == {"bios": True, "uefi": True}

    hosts = BOOT + "/hosts"
    ok = {"name": "server1", "mac": "AC:1F:6B:8A:A7:9C", "image": debian, "config": "coreos-builder",
          "firmware": "uefi"}
    assert api.post(hosts, data=ok).status_code == 200
    # The seed's three rules, each a 400 naming its field.
    assert_param_error(api.post(hosts, data=dict(ok, name="s2", mac="ac-1f-6b-8a-a7-9d", config="nope")),
                       {"config": "boot config 'nope' does not exist"})
    assert_param_error(api.post(hosts, data=dict(ok, name="s2", mac="ac-1f-6b-8a-a7-9d", config="fedora-server")),
                       {"config": "boot config 'fedora-server' is not one of image '%s''s (coreos-builder)" % debian})
    assert_param_error(api.post(hosts, data=dict(ok, name="s2", mac="ac-1f-6b-8a-a7-9d", image=plain,
                                                 firmware="")),
                       {"firmware": "value '' does not have a value in the enumeration 'bios, uefi'"})
    assert_param_error(api.post(hosts, data={"name": "s2", "mac": "ac-1f-6b-8a-a7-9d", "image": plain,
                                             "config": "coreos-builder"}),
                       {"config": "image '%s' lists no boot configs, so it takes none" % plain})
    # The one the seed lacks: the image must boot on the host's firmware.
    assert_param_error(api.post(hosts, data={"name": "s2", "mac": "ac-1f-6b-8a-a7-9d", "image": plain,
                                             "firmware": "bios"}),
                       {"image": "image '%s' has no El Torito boot entry for bios firmware" % plain})
    assert_param_error(api.post(hosts, data={"name": "s2", "mac": "ac:1f:6b:8a:a7:9c"}),
                       {"mac": "MAC address ac:1f:6b:8a:a7:9c is host 'server1''s"})
    assert_param_error(api.post(hosts, data={"name": "s2", "mac": "nope"}), {"mac": "not a MAC address"})
    assert_param_error(api.post(hosts, data={"name": "s2", "mac": "ac-1f-6b-8a-a7-9d", "image": "local:iso/none.iso"}),
                       {"image": "volume 'local:iso/none.iso' does not exist"})
    # After the install, the seed's host boots its disk and gets the target config.
    rc, _, err = cli(booter, "boot", "host", "add", "s2", "--mac", "ac-1f-6b-8a-a7-9d", "--image", "localboot",
                     "--boot-config", "fedora-server")
    assert rc == 0, err
    rc, out, _ = cli(booter, "boot", "host", "ls")
    assert rc == 0
    assert out.splitlines()[0].split() == ["HOST", "MAC", "IMAGE", "CONFIG"]
    assert re.search(r"^server1\s+ac:1f:6b:8a:a7:9c\s+%s\s+coreos-builder$" % re.escape(debian), out, re.M), out
    assert re.search(r"^s2\s+ac:1f:6b:8a:a7:9d\s+localboot\s+fedora-server$", out, re.M), out

    # Update: the same rules hold.
    r = api.request("PUT", hosts + "/server1", data={"config": "fedora-server"})
    assert_param_error(r, {"config": "boot config 'fedora-server' is not one of image '%s''s (coreos-builder)" % debian})
    assert api.request("PUT", hosts + "/server1", data={"config": ""}).status_code == 200
    assert api.ok_data(api.get(hosts + "/server1"))["config"] is None
    # A config in use stays.
    r = api.delete(BOOT + "/configs/fedora-server")
    assert_param_error(r, {"name": "boot config 'fedora-server' is used by host 's2'"})
    assert cli(booter, "boot", "host", "rm", "s2")[0] == 0
    assert api.delete(BOOT + "/configs/fedora-server").status_code == 200
    assert api.get(BOOT + "/configs/fedora-server").status_code == 404
    # Reading needs Sys.Audit, changing Sys.Modify.
    assert booter.api("alice_sepds").get(hosts).status_code == 403
    assert booter.api(None).get(hosts).status_code == 401


def test_ipxe_scripts_and_configs(booter, origin):
    api = booter.api("root")
    image = add(booter, origin.files / "debian-like.iso")
    api.post(BOOT + "/configs", data={"name": "one", "format": "kickstart", "files": json.dumps({"ks.cfg": "ks\n"})})
    api.post(BOOT + "/configs", data={"name": "two", "format": "ignition",
                                      "files": json.dumps({"a.ign": "{}", "b.ign": "[]"})})
    assert put_volume(api, image, **{"boot-configs": "one two"}).status_code == 200
    for name, mac, img, cfg in (("web1", MAC, image, "one"), ("web2", "52:54:00:00:00:02", image, "two"),
                                ("disk", "52:54:00:00:00:03", "localboot", None)):
        data = {"name": name, "mac": mac, "image": img}
        if cfg:
            data["config"] = cfg
        r = api.post(BOOT + "/hosts", data=data)
        assert r.status_code == 200, r.text
    plain = "http://127.0.0.1:%d" % booter.plain_port
    # What a DHCP boot file points at: ask again with the MAC.
    r = requests.get(plain + "/boot/ipxe", timeout=10)
    assert r.text == "#!ipxe\nchain %s/boot/ipxe?mac=${mac:hexhyp}\n" % plain
    # A private image is not booted.
    r = requests.get(plain + "/boot/ipxe", params={"mac": "52-54-00-12-34-56"}, timeout=10)
    assert r.text == "#!ipxe\necho isolib: image '%s' is private: make it public to boot it\nexit\n" % image
    assert put_volume(api, image, access="public").status_code == 200
    url = "/files/local/iso/debian-like.iso"
    for form in ("52-54-00-12-34-56", MAC, MAC.upper()):
        r = requests.get(plain + "/boot/ipxe", params={"mac": form}, timeout=10)
        assert r.text == "#!ipxe\necho Booting %s for web1 (%s)\nsanboot %s%s\n" % (image, MAC, plain, url)
    # The URL is the one the script came through: a proxy's Host, the TLS listener's scheme.
    r = requests.get(plain + "/boot/ipxe", params={"mac": MAC}, headers={"Host": "boot.example:8080"}, timeout=10)
    assert r.text.endswith("sanboot http://boot.example:8080%s\n" % url)
    r = requests.get("https://127.0.0.1:%d/boot/ipxe" % booter.port, params={"mac": MAC}, verify=False, timeout=10)
    assert r.text.endswith("sanboot https://127.0.0.1:%d%s\n" % (booter.port, url))
    assert requests.get(plain + url, timeout=10).content == (origin.files / "debian-like.iso").read_bytes()
    for mac, why in (("52:54:00:00:00:03", "host 'disk' boots from its disk"),
                     ("52:54:00:00:00:99", "no host has MAC address 52:54:00:00:00:99"),
                     ("xyz", "'xyz' is not a MAC address")):
        r = requests.get(plain + "/boot/ipxe", params={"mac": mac}, timeout=10)
        assert r.text == "#!ipxe\necho isolib: %s\nexit\n" % why
    # Configs by MAC (behind NAT); one file, or the one asked for.
    r = requests.get(plain + "/boot/config", params={"mac": MAC}, timeout=10)
    assert (r.status_code, r.text) == (200, "ks\n")
    r = requests.get(plain + "/boot/config", params={"mac": "52:54:00:00:00:02"}, timeout=10)
    assert r.status_code == 404
    assert r.text == "boot config 'two' has 2 files (a.ign, b.ign): ask for /boot/config/<file>\n"
    r = requests.get(plain + "/boot/config/b.ign", params={"mac": "52:54:00:00:00:02"}, timeout=10)
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (200, "[]", "application/json")
    assert requests.get(plain + "/boot/config/c.ign", params={"mac": "52:54:00:00:00:02"},
                        timeout=10).status_code == 404
    assert requests.get(plain + "/boot/config", params={"mac": "52:54:00:00:00:03"}, timeout=10).text == \
        "host 'disk' has no boot config\n"
    # No host has 127.0.0.1.
    r = requests.get(plain + "/boot/config", timeout=10)
    assert (r.status_code, r.text) == (404, "no host has this address\n")
    # The plain listener serves nothing of the API.
    assert requests.get(plain + "/api2/json/version", timeout=10).status_code == 404


# --- a host known by its address, in a network namespace of its own ---------------------------------


def sh(*args):
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = "isoboot-" + tag, "ib%s-h" % tag, "ib%s-n" % tag
    octet = int(tag[:2], 16) % 200 + 20
    host_ip, ns_ip = "10.213.%d.1" % octet, "10.213.%d.2" % octet
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns)
        sh("ip", "addr", "add", host_ip + "/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", ns_ip + "/30", "dev", ns_if)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, host_ip, ns_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_an_installer_gets_its_config_by_its_address(request, netns):
    ns, host_ip, ns_ip = netns
    gen = _daemon_fixture(request, "isolib-bootns-", boot_setup(host_ip))
    daemon = next(gen)
    try:
        api = daemon.api("root")
        api.post(BOOT + "/configs", data={"name": "ks", "format": "kickstart",
                                          "files": json.dumps({"ks.cfg": "install\n"})})
        r = api.post(BOOT + "/hosts", data={"name": "inst", "mac": MAC, "ip": ns_ip, "image": "localboot",
                                            "config": "ks"})
        assert r.status_code == 200, r.text
        url = "http://%s:%d/boot/config" % (host_ip, daemon.plain_port)
        fetch = ("import sys, urllib.request, urllib.error\n"
                 "try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=10); print(r.status); print(r.read().decode(), end='')\n"
                 "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode(), end='')\n")
        out = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", fetch, url],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout == "200\ninstall\n", out.stderr
        # From the host's own side of the link the address is another: unknown.
        r = requests.get(url, timeout=10)
        assert (r.status_code, r.text) == (404, "no host has this address\n")
    finally:
        next(gen, None)


# --- a real boot -------------------------------------------------------------------------------------


def served(daemon):
    """The /files/ and /boot/ requests in the daemon's log, in order."""
    lines = (re.sub(r"\x1b\[[0-9;]*m", "", line) for line in daemon.log_text().splitlines())
    return [line.split("isolib::http::dispatch: ", 1)[1] for line in lines
            if "isolib::http::dispatch: " in line and re.search(r"(GET|HEAD) /(boot|files)/", line)]


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or not os.path.exists(IPXE_ISO),
                    reason="needs qemu-system-x86 and ipxe")
def test_qemu_sanboots_an_image_the_daemon_serves(booter, tmp_path):
    api = booter.api("root")
    image = add(booter, IPXE_ISO)
    info = api.ok_data(api.get("/nodes/%s/storage/local/content/%s" % (NODE, enc(image))))
    assert info["iso"]["boot"]["bios"], info
    assert put_volume(api, image, access="public").status_code == 200
    r = api.post(BOOT + "/hosts", data={"name": "vm1", "mac": MAC, "image": image, "firmware": "bios"})
    assert r.status_code == 200, r.text
    size = os.path.getsize(IPXE_ISO)
    # QEMU's user network: the guest reaches the host's 127.0.0.1 as 10.0.2.2.
    bootfile = "http://10.0.2.2:%d/boot/ipxe" % booter.plain_port
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "accel=tcg", "-m", "256", "-display", "none", "-serial", "null",
         "-monitor", "none", "-no-reboot", "-boot", "n",
         "-netdev", "user,id=n0,bootfile=" + bootfile,
         "-device", "virtio-net-pci,netdev=n0,mac=" + MAC],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "qemu.log", "wb"))
    try:
        def booted():
            seen = served(booter)
            reads = [i for i, s in enumerate(seen) if s.startswith("GET /files/local/iso/ipxe.iso")]
            # The booted ipxe.iso does DHCP again and asks for its boot file once more.
            return reads and any(s.startswith("GET /boot/ipxe ") for s in seen[reads[-1]:])
        wait_until(booted, timeout=240, interval=1, what="the booted image's own request")
    finally:
        qemu.kill()
        qemu.wait(timeout=30)
    seen = served(booter)
    assert seen[0].startswith("GET /boot/ipxe  range - from 127.0.0.1: 200"), seen[:3]
    assert seen[1].startswith("GET /boot/ipxe mac=52-54-00-12-34-56 range - from 127.0.0.1: 200"), seen[:3]
    assert seen[2].startswith("HEAD /files/local/iso/ipxe.iso  range - from 127.0.0.1: 200"), seen[:4]
    ranges = [re.search(r"range bytes=(\d+)-(\d+)", s) for s in seen if s.startswith("GET /files/")]
    assert ranges and all(ranges), seen
    starts = [int(m.group(1)) for m in ranges]
    # The primary volume descriptor (sector 16), the boot record (17), then the boot catalog.
    assert starts[:2] == [32768, 34816], starts[:5]
    assert all(int(m.group(2)) < size for m in ranges)
    assert all(" 206" in s for s in seen if s.startswith("GET /files/")), seen
