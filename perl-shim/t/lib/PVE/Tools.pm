package PVE::Tools;

# Test stand-in for pve-common's PVE::Tools: only download_file_from_url, with the original's
# signature and $opts keys (hash_required, verify_certificates, http_proxy, https_proxy,
# <algo>sum, assert_file_validity, decompression_command), written for these tests.
#
# It records every call (in @DOWNLOAD_CALLS, and as one line in $ENV{PVE_TOOLS_STANDIN_CALL_LOG}
# when set, so a forked worker's calls are visible to the test), then fetches the URL the way
# PVE's wget run does: into "<dest>.tmp_dwnl.<pid>" in the destination directory, checksum
# over the downloaded bytes, then rename. Its return value tells the call context apart, so a
# test can check that a wrapper passes both the value and the context through.

use strict;
use warnings;

use Digest::MD5;
use Digest::SHA;
use HTTP::Tiny;

our @DOWNLOAD_CALLS;

sub download_file_from_url {
    my ($dest, $url, $opts) = @_;

    push @DOWNLOAD_CALLS, [$dest, $url, $opts];
    if (my $log = $ENV{PVE_TOOLS_STANDIN_CALL_LOG}) {
        open(my $fh, '>>', $log) or die "unable to open '$log': $!\n";
        print $fh "$dest\t$url\n";
        close($fh);
    }

    $opts //= {};
    my ($algo, $expected);
    for my $name (qw(sha512 sha384 sha256 sha224 sha1 md5)) {
        next if !defined($opts->{"${name}sum"});
        ($algo, $expected) = ($name, $opts->{"${name}sum"});
        last;
    }
    die "checksum required but not specified\n" if $opts->{hash_required} && !$algo;

    print "downloading $url to $dest\n";
    die "refusing to override existing file '$dest'\n" if -f $dest && !$opts->{allow_overwrite};

    my $tmp = "$dest.tmp_dwnl.$$";
    eval {
        open(my $fh, '>', $tmp) or die "unable to create '$tmp': $!\n";
        binmode($fh);
        my $http = HTTP::Tiny->new(verify_SSL => ($opts->{verify_certificates} // 1) ? 1 : 0);
        my $res = $http->get($url, { data_callback => sub { print {$fh} $_[0] } });
        close($fh) or die "unable to write '$tmp': $!\n";
        die "download failed: $res->{status} $res->{reason}\n" if !$res->{success};

        if ($algo) {
            print "calculating checksum...";
            my $got = file_hash($algo, $tmp);
            if ($got ne lc($expected)) {
                print "\n";
                die "checksum mismatch: got '$got' != expect '$expected'\n";
            }
            print "OK, checksum verified\n";
        }
        if (my $check = $opts->{assert_file_validity}) {
            eval { $check->($tmp) };
            die "failed to verify file: $@" if $@;
        }
        rename($tmp, $dest) or die "unable to rename temporary file: $!\n";
    };
    if (my $err = $@) {
        unlink($tmp);
        die $err;
    }

    print "download of '$url' to '$dest' finished\n";
    return wantarray ? ('list-context', $dest) : "scalar-context:$dest";
}

sub file_hash {
    my ($algo, $file) = @_;
    my $digest = $algo eq 'md5' ? Digest::MD5->new : Digest::SHA->new(substr($algo, 3));
    open(my $fh, '<', $file) or die "unable to open '$file': $!\n";
    binmode($fh);
    return lc($digest->addfile($fh)->hexdigest);
}

1;
