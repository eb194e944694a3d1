#!/usr/bin/perl
# Destinations that are not an isolib content directory go to the original
# download_file_from_url untouched: same arguments, same context, same return value. The
# socket points nowhere, so any attempt to use the daemon would fail these downloads.
# Run: prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/11-passthrough.t

use strict;
use warnings;

use Test::More;

use File::Path ();
use Scalar::Util qw(refaddr);

use PVE::Storage;
use PVE::Tools;
use IsolibTest qw(setup start_origin slurp);
use IsolibTest::DownloadUrl;

my $env = setup();
$ENV{ISOLIB_SOCKET} = "$env->{tmp}/no-daemon.sock";

my $data = join('', map { chr(($_ * 31 + 7) % 251) } 0 .. 300_000);
my $origin = start_origin('/plain.iso' => { body => $data }, '/t.tar.gz' => { body => $data });

# Through the download-url stand-in, into a dir storage.
my ($worker, $dest, $opts) = IsolibTest::DownloadUrl::prepare({
    node => 'localhost', storage => 'plain', content => 'iso', filename => 'plain.iso',
    url => "$origin/plain.iso",
});
is($dest, "$env->{plain}/template/iso/plain.iso", 'destination in the dir storage');
@PVE::Tools::DOWNLOAD_CALLS = ();
{
    my $out = '';
    open(my $fh, '>', \$out) or die $!;
    my $old = select($fh);
    eval { $worker->() };
    select($old);
    is($@, '', 'download succeeded');
    like($out, qr/^downloading \Q$origin\E\/plain\.iso to \Q$dest\E$/m, "the original's output");
}
is(scalar(@PVE::Tools::DOWNLOAD_CALLS), 1, 'the original was called once');
my $call = $PVE::Tools::DOWNLOAD_CALLS[0];
is($call->[0], $dest, '... with the destination');
is($call->[1], "$origin/plain.iso", '... the URL');
is(refaddr($call->[2]), refaddr($opts), '... and the very same $opts');
is(slurp($dest), $data, 'the file landed as wget would write it');

# Directly, in both contexts, for paths around the isolib storage.
for my $path (
    "$env->{tmp}/elsewhere.iso",
    "$env->{isos}/snippets/x.iso",
    "$env->{isos}/x.iso",
    "$env->{isos}/template/iso/sub/x.iso",
) {
    File::Path::make_path($path =~ s!/[^/]+$!!r);

    @PVE::Tools::DOWNLOAD_CALLS = ();
    my $o = { verify_certificates => 1 };
    my $scalar = do {
        local *STDOUT;
        open(STDOUT, '>', '/dev/null') or die $!;
        PVE::Tools::download_file_from_url($path, "$origin/t.tar.gz", $o);
    };
    is($scalar, "scalar-context:$path", "scalar return value passed through ($path)");
    unlink($path);
    my @list = do {
        local *STDOUT;
        open(STDOUT, '>', '/dev/null') or die $!;
        PVE::Tools::download_file_from_url($path, "$origin/t.tar.gz", $o);
    };
    is_deeply(\@list, ['list-context', $path], '... and the list one');
    is(scalar(@PVE::Tools::DOWNLOAD_CALLS), 2, '... both calls reached the original');
    is(refaddr($PVE::Tools::DOWNLOAD_CALLS[1]->[2]), refaddr($o), '... with the same $opts');
    is(slurp($path), $data, '... which wrote the file');
}

# An error of the original comes through unchanged.
eval {
    local *STDOUT;
    open(STDOUT, '>', '/dev/null') or die $!;
    PVE::Tools::download_file_from_url($dest, "$origin/plain.iso", {});
};
is($@, "refusing to override existing file '$dest'\n", "the original's error, unchanged");

done_testing();
