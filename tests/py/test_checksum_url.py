"""download-url's `checksum-url`: the checksum taken from a distribution's checksum file on the
node that downloads, in the dialects distributions publish, failing closed before a byte is kept."""

import hashlib
import json
import os

from helpers import assert_nothing_new, assert_only_new, assert_param_error, install_keyring, record_rel, tree


def publish(origin, name, text):
    """A checksum file on the nginx origin."""
    (origin.files / name).write_text(text)
    return origin.file_url(name)


def digest(origin, name, algo="sha256"):
    return hashlib.new(algo, (origin.files / name).read_bytes()).hexdigest()


def run(api, origin, image, filename=None, **params):
    upid = api.start_download(url=origin.file_url(image), content="iso", filename=filename or image, **params)
    return api.wait(upid)["exitstatus"], api.log_lines(upid)


def test_debian_ubuntu_fedora_and_per_image_files(daemon, origin):
    api = daemon.api("root")
    store = daemon.storage_path()
    before = tree(store)
    sha = digest(origin, "small.iso")
    sha512 = digest(origin, "other.iso", "sha512")
    cases = [
        # Debian: coreutils lines, another image listed first
        ("cu-SHA256SUMS", "%s  debian-like.iso\n%s  small.iso\n" % (digest(origin, "debian-like.iso"), sha),
         "small.iso", "debian.iso"),
        # Ubuntu: the binary-mode star, upper-case hex
        ("ub-SHA256SUMS", "%s *small.iso\n" % sha.upper(), "small.iso", "ubuntu.iso"),
        # Fedora: BSD lines with size comments, cleartext-signed (the signature is not checked here)
        ("Fedora-Server-41-x86_64-CHECKSUM",
         "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# small.iso: 2097152 bytes\n"
         "SHA256 (small.iso) = %s\n-----BEGIN PGP SIGNATURE-----\n\nx\n-----END PGP SIGNATURE-----\n" % sha,
         "small.iso", "fedora.iso"),
        # Alpine/openSUSE: one file per image, its algorithm in its name
        ("other.iso.sha512", "%s  other.iso\n" % sha512, "other.iso", "other.iso"),
    ]
    for sums, text, image, filename in cases:
        url = publish(origin, sums, text)
        status, log = run(api, origin, image, filename, **{"checksum-url": url})
        assert status == "OK", (sums, log)
        assert "fetching checksum file %s" % url in log
        assert "calculating checksum...OK, checksum verified" in log, log
        record = json.loads((store / record_rel("template/iso/" + filename)).read_text())
        assert record["source"]["checksum-url"] == url
        assert record["source"]["checksum-file-sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert_only_new(before, store, ["template/iso/" + c[3] for c in cases])
    assert json.loads((store / record_rel("template/iso/other.iso")).read_text())["checksum"] == {
        "algorithm": "sha512", "value": sha512}


def test_refusals_fail_closed_before_a_byte_is_kept(daemon, origin):
    api = daemon.api("root")
    store = daemon.storage_path()
    before = tree(store)
    sha = digest(origin, "small.iso")
    missing = publish(origin, "missing-SHA256SUMS", "%s  something-else.iso\n" % sha)
    status, _ = run(api, origin, "small.iso", "m.iso", **{"checksum-url": missing})
    assert status == "checksum file '%s' has no entry for 'm.iso'" % missing
    twice = publish(origin, "twice-SHA256SUMS", "%s  small.iso\n%s  small.iso\n" % (sha, "0" * 64))
    status, _ = run(api, origin, "small.iso", **{"checksum-url": twice})
    assert status == "checksum file '%s' lists 'small.iso' twice with different checksums" % twice
    weak = publish(origin, "MD5SUMS", "%s  small.iso\n" % digest(origin, "small.iso", "md5"))
    status, _ = run(api, origin, "small.iso", **{"checksum-url": weak})
    assert status == ("checksum file '%s' gives a md5 checksum, weaker than the minimum sha256 "
                      "(min-checksum-algorithm)" % weak)
    b2 = publish(origin, "b2sums.txt", "%s  small.iso\n" % ("a" * 128))
    status, _ = run(api, origin, "small.iso", **{"checksum-url": b2})
    assert status == "checksum file '%s' uses BLAKE2, which isolib cannot check" % b2
    gone = origin.file_url("no-such-SHA256SUMS")
    status, _ = run(api, origin, "small.iso", **{"checksum-url": gone})
    assert status == "unable to fetch '%s': HTTP 404 Not Found" % gone
    wrong = publish(origin, "wrong-SHA256SUMS", "%s  small.iso\n" % ("1" * 64))
    status, _ = run(api, origin, "small.iso", **{"checksum-url": wrong})
    assert status == "checksum mismatch: got '%s' != expect '%s'" % (sha, "1" * 64)
    assert_nothing_new(before, store)

    r = api.download_url(url=origin.file_url("small.iso"), content="iso", filename="small.iso",
                         checksum=sha, **{"checksum-algorithm": "sha256", "checksum-url": wrong})
    assert_param_error(r, {"checksum-url": "not allowed together with 'checksum'"})
    r = api.download_url(url=origin.file_url("small.iso"), content="iso", filename="small.iso",
                         **{"checksum-url": "ftp://x/SHA256SUMS"})
    assert_param_error(r, {"checksum-url": "value does not match the regex pattern"})


# --- signatures ------------------------------------------------------------------------------


def keyring(daemon, gpg, name, fprs, armor):
    install_keyring(daemon.base / "state", gpg, name, fprs, armor)


def test_signed_checksum_files_from_keys_in_the_keyring(daemon, origin, keys):
    gpg, debian, fedora, _ = keys
    keyring(daemon, gpg, "debian", [debian], armor=False)
    keyring(daemon, gpg, "fedora", [fedora], armor=True)
    api = daemon.api("root")
    store = daemon.storage_path()
    sha = digest(origin, "small.iso")

    sums = origin.files / "sig-SHA256SUMS"
    sums.write_text("%s  small.iso\n" % sha)
    sign = gpg.sign(debian, sums, "detached")  # Debian: SHA256SUMS.sign
    armored = gpg.sign(debian, sums, "armored")  # Ubuntu: SHA256SUMS.gpg, armored
    for sig, name in ((sign, "deb.iso"), (armored, "ubu.iso")):
        status, log = run(api, origin, "small.iso", name, keyring="debian", **{
            "checksum-url": origin.file_url(sums.name), "signature-url": origin.file_url(os.path.basename(sig))})
        assert status == "OK", log
        assert "checksum file signed by %s: OK" % debian in log
        record = json.loads((store / record_rel("template/iso/" + name)).read_text())
        assert record["source"]["checksum-signer"] == debian

    checksum = origin.files / "Fedora-CHECKSUM"
    checksum.write_text("# small.iso: 2097152 bytes\nSHA256 (small.iso) = %s\n" % sha)
    clear = gpg.sign(fedora, checksum, "clear")
    status, log = run(api, origin, "small.iso", "fed.iso", keyring="fedora",
                      **{"checksum-url": origin.file_url(os.path.basename(clear))})
    assert status == "OK", log
    assert "checksum file signed by %s: OK" % fedora in log


def test_signature_refusals_fail_closed(daemon, origin, keys):
    gpg, debian, _, stranger = keys
    keyring(daemon, gpg, "debian", [debian], armor=True)
    api = daemon.api("root")
    store = daemon.storage_path()
    before = tree(store)
    sha = digest(origin, "small.iso")
    sums = origin.files / "ref-SHA256SUMS"
    sums.write_text("%s  small.iso\n" % sha)
    url = origin.file_url(sums.name)

    by_stranger = gpg.sign(stranger, sums, "detached")
    status, _ = run(api, origin, "small.iso", keyring="debian",
                    **{"checksum-url": url, "signature-url": origin.file_url(os.path.basename(by_stranger))})
    assert status == "checksum file '%s' was signed by key %s, which is not in keyring 'debian'" % (url, stranger)

    good = gpg.sign(debian, sums, "detached")
    sums.write_text("%s  small.iso\n%s  evil.iso\n" % (sha, "0" * 64))  # changed after signing
    status, _ = run(api, origin, "small.iso", keyring="debian",
                    **{"checksum-url": url, "signature-url": origin.file_url(os.path.basename(good))})
    assert status == ("checksum file '%s' has a signature that does not verify (key %s of keyring 'debian')"
                      % (url, debian))

    status, _ = run(api, origin, "small.iso", keyring="debian", **{"checksum-url": url})
    assert status == "checksum file '%s' is not signed, but keyring 'debian' was given" % url
    assert_nothing_new(before, store)

    r = api.download_url(url=origin.file_url("small.iso"), content="iso", filename="small.iso",
                         keyring="nosuch", **{"checksum-url": url})
    assert r.status_code == 400 and "keyring 'nosuch' is not configured" in r.json()["errors"]["keyring"], r.text
    r = api.download_url(url=origin.file_url("small.iso"), content="iso", filename="small.iso",
                         **{"checksum-url": url, "signature-url": url + ".sign"})
    assert_param_error(r, {"keyring": "missing property required by 'signature-url'"})
