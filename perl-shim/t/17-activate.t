#!/usr/bin/perl
# activate_volume (the seed's ensureLocal): a volume that is there never involves the daemon; a
# missing one is asked of the daemon, and when no node can provide it the reason reaches the
# task log and PVE's own message is the error. The copy itself, from another node, is shown by
# tests/py/test_cluster.py, which runs this plugin on a node of a cluster in network namespaces.
# Run: ISOLIB_BIN=target/debug/isolib prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/17-activate.t

use strict;
use warnings;

use Test::More;

use Cwd ();
use File::Basename ();

use PVE::Storage;
use IsolibTest qw(setup);

my $env = setup();
my $class = 'PVE::Storage::Custom::IsolibPlugin';
my $scfg = { type => 'isolib', path => $env->{isos}, content => { iso => 1 } };
File::Path::make_path("$env->{isos}/template/iso");
IsolibTest::spew("$env->{isos}/template/iso/here.iso", "x" x 4096);

# Everything the plugin prints (PVE's task log, inside a worker).
sub activate {
    my ($volname) = @_;
    my $out = '';
    open(my $fh, '>', \$out) or die "capture: $!";
    my $old = select($fh);
    my $ok = eval { $class->activate_volume('isos', $scfg, $volname); 1 };
    my $err = $@;
    select($old);
    close($fh);
    return ($ok, $err, $out);
}

{
    # Nothing listens there: a daemon that is asked at all makes this fail.
    local $ENV{ISOLIB_SOCKET} = "$env->{tmp}/nobody.sock";
    my ($ok, $err, $out) = activate('iso/here.iso');
    ok($ok, 'a volume that is there activates') or diag($err);
    is($out, '', 'without a word from isolib (the daemon is not asked)');

    ($ok, $err, $out) = activate('iso/gone.iso');
    is($err, "volume 'isos:iso/gone.iso' does not exist\n", "a missing volume: PVE's error");
    like($out, qr/^isolib: unable to copy 'isos:iso\/gone\.iso' to this node: isolib daemon not reachable at/,
        'the reason is in the task log');
}

SKIP: {
    eval { IsolibTest::start_daemon($env); 1 } or skip("no daemon: $@", 3);
    my ($ok, $err, $out) = activate('iso/gone.iso');
    is($err, "volume 'isos:iso/gone.iso' does not exist\n", 'no node holds it: PVE\'s error');
    like($out, qr/^isolib: unable to copy 'isos:iso\/gone\.iso' to this node: .*no node holds 'isos:iso\/gone\.iso'/m,
        'the daemon said why');

    # pvedaemon runs `perl -T`: the volume name (from the API) and the socket path (from the
    # environment) are tainted there, and the request still goes out.
    my $t = Cwd::abs_path(File::Basename::dirname(__FILE__));
    my $script = <<'EOF';
use strict;
use warnings;
use PVE::Storage;
my ($path, $volname) = @ARGV;
($path) = $path =~ m/^(.*)\z/s;
eval {
    PVE::Storage::Custom::IsolibPlugin->activate_volume('isos', { type => 'isolib', path => $path }, $volname);
};
print $@ ? "ERROR: $@" : "OK\n";
EOF
    open(my $fh, '-|', $^X, '-T', '-I', "$t/../lib", '-I', "$t/lib", '-e', $script, $env->{isos}, 'iso/gone.iso')
        or die "unable to run perl -T: $!\n";
    my $tainted = do { local $/; <$fh> } // '';
    close($fh);
    like($tainted, qr/no node holds 'isos:iso\/gone\.iso'.*\nERROR: volume 'isos:iso\/gone\.iso' does not exist\n\z/s,
        'under perl -T the daemon is asked and PVE\'s error follows');
}

done_testing();
