#!/usr/bin/perl
# Registration data of the isolib storage plugin, loaded the way PVE loads custom plugins.
# Run (from the repository root):
#   ISOLIB_BIN=target/debug/isolib prove -r -I perl-shim/lib -I perl-shim/t/lib perl-shim/t

use strict;
use warnings;

use Test::More;

use File::Basename qw(dirname);
use File::Temp ();

my @warnings;
my $original;
BEGIN {
    $SIG{__WARN__} = sub { push @warnings, @_ };
    require PVE::Tools;
    $original = \&PVE::Tools::download_file_from_url;
}

use PVE::Storage;    # registers `dir`, loads PVE/Storage/Custom/*.pm from @INC, init()

my $class = 'PVE::Storage::Custom::IsolibPlugin';

is_deeply(\@PVE::Storage::CUSTOM_PLUGINS, [$class], 'the loader accepted the plugin');
is_deeply(\@warnings, [], 'loading produced no warning (api() equals the node APIVER)');
is(PVE::Storage::Plugin->lookup('isolib'), $class, "registered as type 'isolib'");
ok($class->isa('PVE::Storage::Plugin'), 'derives from PVE::Storage::Plugin');

my $plugdir = dirname($INC{'PVE/Storage/Custom/IsolibPlugin.pm'});
opendir(my $dh, $plugdir) or die "$plugdir: $!";
is_deeply([sort grep { m/\.pm$/ } readdir($dh)], ['IsolibPlugin.pm'],
    'PVE/Storage/Custom holds only the plugin (PVE loads every file there as one)');

is_deeply(
    $class->plugindata()->{content},
    [{ iso => 1, vztmpl => 1, import => 1 }, { iso => 1 }],
    'content iso,vztmpl,import, default iso',
);
is_deeply($class->properties(), {}, 'declares no property of its own, path included');
is_deeply($class->options()->{path}, { fixed => 1 }, 'path is a fixed option');
for my $opt (qw(content content-dirs nodes disable shared)) {
    ok($class->options()->{$opt}->{optional}, "$opt is optional");
}
my $pdata = PVE::Storage::Plugin->private();
is_deeply($pdata->{options}->{isolib}, $class->options(), 'init() accepted every option');

# storage.cfg parsing through the registered plugin data.
{
    my $w = [];
    local $SIG{__WARN__} = sub { push @$w, @_ };
    my $cfg = PVE::Storage::Plugin->parse_config('storage.cfg',
        "isolib: a\n\tpath /srv/a\n\nisolib: b\n\tpath /srv/b\n\tcontent iso,backup,import\n"
            . "\tcontent-dirs iso=cd\n");
    is_deeply($cfg->{ids}->{a}->{content}, { iso => 1 }, 'content defaults to iso');
    is_deeply($cfg->{ids}->{b}->{content}, { iso => 1, import => 1 }, 'unsupported content dropped');
    is_deeply($w, ["storage does not support content type 'backup'\n"], '... with a warning');
    is($class->get_subdir($cfg->{ids}->{b}, 'iso'), '/srv/b/cd', 'content-dirs honoured');
    is($class->get_subdir($cfg->{ids}->{a}, 'vztmpl'), '/srv/a/template/cache', 'vztmpl dir');
    is($class->get_subdir($cfg->{ids}->{a}, 'import'), '/srv/a/import', 'import dir');
    is($class->path($cfg->{ids}->{a}, 'iso/x.iso', 'a'), '/srv/a/template/iso/x.iso',
        'path resolution is inherited');
}

# Online-ness and activation depend on the directory only, never on the daemon.
{
    my $tmp = File::Temp::tempdir(CLEANUP => 1);
    local $ENV{ISOLIB_SOCKET} = "$tmp/no-daemon-here.sock";
    local $PVE::Cluster::CFS_DIR = $tmp;
    open(my $fh, '>', "$tmp/storage.cfg") or die $!;
    print $fh "isolib: lib\n\tpath $tmp/lib\n\tcontent iso,vztmpl,import\n\n"
        . "isolib: gone\n\tpath $tmp/missing\n";
    close($fh);
    mkdir("$tmp/lib") or die $!;

    my $cfg = PVE::Storage::config();
    ok($class->check_connection('lib', $cfg->{ids}->{lib}), 'online without a daemon');
    eval { PVE::Storage::activate_storage($cfg, 'lib') };
    is($@, '', 'activation succeeds without a daemon');
    ok(-d "$tmp/lib/$_", "activation created $_")
        for qw(template/iso template/cache import);
    eval { PVE::Storage::activate_storage($cfg, 'gone') };
    like($@, qr/^unable to activate storage 'gone' - directory '\Q$tmp\E\/missing'/,
        'a missing directory is what makes activation fail');
}

# The download router is installed once, around the original function.
isnt(\&PVE::Tools::download_file_from_url, $original, 'download_file_from_url is wrapped');
is($PVE::Isolib::Router::ORIGINAL, $original, 'the wrapper keeps the original');
PVE::Isolib::Router::install();
is($PVE::Isolib::Router::ORIGINAL, $original, 'a second install() does not wrap the wrapper');

done_testing();
