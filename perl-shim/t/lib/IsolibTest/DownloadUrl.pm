package IsolibTest::DownloadUrl;

# Stand-in for the code of PVE's download-url handler (pve-storage
# src/PVE/API2/Storage/Status.pm, method download_url), written for these tests. It keeps the
# handler's order of checks and, above all, its call:
#     PVE::Tools::download_file_from_url("$path/$filename", $url, $opts)
# with the same $opts keys (hash_required, verify_certificates, http_proxy, https_proxy,
# <algo>sum, assert_file_validity, and decompression_command set inside the worker).
# prepare() runs the synchronous part and returns the worker sub; the test runs that sub in
# IsolibTest::run_worker, as PVE runs it in fork_worker.

use strict;
use warnings;

use File::Path ();

use PVE::Cluster ();
use PVE::Storage;
use PVE::Tools;

sub prepare {
    my ($param) = @_;

    my $cfg = PVE::Storage::config();
    my ($storage, $compression) = @{$param}{qw(storage compression)};
    my $scfg = PVE::Storage::storage_check_enabled($cfg, $storage, $param->{node});

    die "can't upload to storage type '$scfg->{type}', not a file based storage!\n"
        if !defined($scfg->{path});

    my ($content, $url) = @{$param}{qw(content url)};
    die "storage '$storage' is not configured for content-type '$content'\n"
        if !$scfg->{content}->{$content};

    my $filename = PVE::Storage::normalize_content_filename($param->{filename});

    my $path;
    if ($content eq 'iso') {
        die "filename: wrong file extension\n"
            if $filename !~ m![^/]+$PVE::Storage::ISO_EXT_RE_0$!;
        $path = PVE::Storage::get_iso_dir($cfg, $storage);
    } elsif ($content eq 'vztmpl') {
        die "filename: wrong file extension\n"
            if $filename !~ m![^/]+$PVE::Storage::VZTMPL_EXT_RE_1$!;
        $path = PVE::Storage::get_vztmpl_dir($cfg, $storage);
    } elsif ($content eq 'import') {
        die "filename: invalid filename or wrong extension\n"
            if $filename !~ m!${PVE::Storage::SAFE_CHAR_CLASS_RE}+$PVE::Storage::UPLOAD_IMPORT_EXT_RE_1$!;
        $path = PVE::Storage::get_import_dir($cfg, $storage);
    } else {
        die "content: upload content-type '$content' is not allowed\n";
    }

    PVE::Storage::activate_storage($cfg, $storage);
    File::Path::make_path($path);

    my $dccfg = PVE::Cluster::cfs_read_file('datacenter.cfg');
    my $opts = {
        hash_required => 0,
        verify_certificates => $param->{'verify-certificates'} // 1,
        http_proxy => $dccfg->{http_proxy},
        https_proxy => $dccfg->{http_proxy},
    };

    my ($checksum, $algorithm) = @{$param}{ 'checksum', 'checksum-algorithm' };
    if ($checksum) {
        $opts->{"${algorithm}sum"} = $checksum;
        $opts->{hash_required} = 1;
    }

    # PVE checks the temp file with qemu-img / tar here; the stand-in only refuses empty files.
    $opts->{assert_file_validity} = sub {
        my ($tmp_path) = @_;
        die "empty file '$tmp_path'\n" if -z $tmp_path;
    };

    my $worker = sub {
        if ($compression) {
            die "decompression not supported for $content\n" if $content ne 'iso';
            my $info = PVE::Storage::decompressor_info('iso', $compression);
            die "no decompression method found\n" if !$info->{decompressor};
            $opts->{decompression_command} = $info->{decompressor};
        }
        PVE::Tools::download_file_from_url("$path/$filename", $url, $opts);
    };

    return wantarray ? ($worker, "$path/$filename", $opts) : $worker;
}

1;
