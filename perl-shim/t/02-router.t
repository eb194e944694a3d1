#!/usr/bin/perl
# The router's decisions without a daemon: which destinations are routed, and which daemon
# parameters PVE's $opts become.
# Run: prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/02-router.t

use strict;
use warnings;

use Test::More;

use JSON::PP ();

use PVE::Storage;
use IsolibTest qw(setup);

my $env = setup();
my $isos = $env->{isos};
my $find = \&PVE::Isolib::Router::find_target;

is_deeply($find->("$isos/template/iso/a.iso"),
    { storage => 'isos', content => 'iso', filename => 'a.iso' }, 'iso dir');
is_deeply($find->("$isos/template/cache/t.tar.zst"),
    { storage => 'isos', content => 'vztmpl', filename => 't.tar.zst' }, 'vztmpl dir');
is_deeply($find->("$isos/import/disk.qcow2"),
    { storage => 'isos', content => 'import', filename => 'disk.qcow2' }, 'import dir');
is_deeply($find->("$isos//template/iso/./b.iso"),
    { storage => 'isos', content => 'iso', filename => 'b.iso' }, 'spelling of the path');

mkdir("$isos/template");
mkdir("$isos/template/iso");
symlink("$isos/template/iso", "$env->{tmp}/link") or die $!;
is_deeply($find->("$env->{tmp}/link/c.iso"),
    { storage => 'isos', content => 'iso', filename => 'c.iso' }, 'a symlink to the dir');

is($find->("$isos/snippets/a.iso"), undef, 'another dir of the isolib storage');
is($find->("$isos/a.iso"), undef, 'the storage root');
is($find->("$isos/template/iso/sub/a.iso"), undef, 'below the content dir');
is($find->("$env->{plain}/template/iso/a.iso"), undef, 'a dir storage');
is($find->('/tmp/a.iso'), undef, 'any other path');
is($find->('a.iso'), undef, 'no directory');

{
    open(my $fh, '>>', "$env->{tmp}/storage.cfg") or die $!;
    print $fh "\nisolib: moved\n\tpath $env->{tmp}/moved\n\tcontent iso\n\tcontent-dirs iso=cd\n";
    close($fh);
    is_deeply($find->("$env->{tmp}/moved/cd/x.iso"),
        { storage => 'moved', content => 'iso', filename => 'x.iso' }, 'content-dirs');
    is($find->("$env->{tmp}/moved/template/iso/x.iso"), undef, '... replaces the default dir');
}

my $target = { storage => 'isos', content => 'iso', filename => 'a.iso' };
my $params = \&PVE::Isolib::Router::daemon_params;

is_deeply(
    $params->($target, 'https://x/a.iso', { hash_required => 0, verify_certificates => 1 }),
    {
        url => 'https://x/a.iso', content => 'iso', filename => 'a.iso',
        'verify-certificates' => JSON::PP::true,
    },
    'plain download',
);
is_deeply(
    $params->($target, 'u', {
        hash_required => 1, verify_certificates => 0, md5sum => 'm', sha256sum => 's',
        http_proxy => 'http://p:3128', https_proxy => 'http://p:3128',
        assert_file_validity => sub { }, decompression_command => ['zstd', '-q', '-d', '-c'],
    }),
    {
        url => 'u', content => 'iso', filename => 'a.iso', checksum => 's',
        'checksum-algorithm' => 'sha256', compression => 'zst',
        'verify-certificates' => JSON::PP::false,
    },
    'strongest checksum, compression name, certificate switch',
);
my %names = (gz => ['zcat'], lzo => ['lzop', '-d', '-c'], bz2 => ['bzcat', '-q']);
for my $name (sort keys %names) {
    is($params->($target, 'u', { decompression_command => $names{$name} })->{compression},
        $name, "decompressor for $name");
    is($params->($target, 'u', { decompression_command => PVE::Storage::decompressor_info('iso',
        $name)->{decompressor} })->{compression}, $name, "... as decompressor_info gives it");
}
eval { $params->($target, 'u', { decompression_command => ['xz', '-d'] }) };
is($@, "isolib: unsupported decompression command 'xz -d'\n", 'unknown decompressor');
eval { $params->($target, 'u', { hash_required => 1 }) };
is($@, "checksum required but not specified\n", 'hash_required without a checksum');

done_testing();
