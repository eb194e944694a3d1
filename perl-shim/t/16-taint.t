#!/usr/bin/perl
# pvedaemon runs under `perl -T`. A routed download in a `perl -T` worker, with the socket path
# from ISOLIB_SOCKET (tainted there), reaches the daemon and lands the file; a socket path
# that is not absolute is refused by name, and a missing daemon is reported as unreachable,
# never as an "Insecure dependency".
# Run: ISOLIB_BIN=target/debug/isolib prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/16-taint.t

use strict;
use warnings;

use Test::More;

use Cwd ();
use Digest::SHA qw(sha256_hex);
use File::Basename ();

use PVE::Isolib::Client;
use IsolibTest qw(setup start_daemon start_origin files_below find_task slurp);

my $env = setup();
start_daemon($env);

my $data = join('', map { chr(($_ * 7) % 256) } 1 .. 256 * 1024);
my $origin = start_origin('/tainted.iso' => { body => $data });

my $t = Cwd::abs_path(File::Basename::dirname(__FILE__));
my @inc = map { ('-I', $_) } ("$t/../lib", "$t/lib");

# The worker: PVE's call into download_file_from_url from a process named like a PVE worker.
# The arguments are the test's own; only ISOLIB_SOCKET comes tainted from the environment.
my $worker = <<'EOF';
use strict;
use warnings;
use PVE::Cluster;
my ($cfs, $dest, $url, $sum) = map { m/^(.*)\z/s; $1 } @ARGV;
$PVE::Cluster::CFS_DIR = $cfs;
require PVE::Storage;
$0 = "task UPID:pvenode:00001234:00005678:6745D3E2:download:tainted.iso:root\@pam:";
$ENV{PATH} = '/usr/bin:/bin';
eval {
    PVE::Tools::download_file_from_url($dest, $url, { hash_required => 1, sha256sum => $sum });
};
print $@ ? "ERROR: $@" : "OK\n";
EOF

sub run_tainted {
    my ($socket, @args) = @_;
    local $ENV{ISOLIB_SOCKET} = $socket;
    open(my $fh, '-|', $^X, '-T', @inc, '-e', $worker, @args) or die "unable to run perl -T: $!\n";
    local $/;
    my $out = <$fh>;
    close($fh);
    return $out // '';
}

my $dest = "$env->{isos}/template/iso/tainted.iso";
my @args = ($env->{tmp}, $dest, "$origin/tainted.iso", sha256_hex($data));

my $out = run_tainted($env->{socket}, @args);
like($out, qr/\ncalculating checksum\.\.\.OK, checksum verified\n.*\nOK\n\z/s,
    'the routed download succeeded under perl -T');
ok((slurp($dest) // '') eq $data, 'the file landed with the origin bytes');
my $task = find_task('tainted.iso');
ok($task, 'through the daemon') or BAIL_OUT('no daemon task');
like($out, qr/^isolib task: \Q$task->{upid}\E\n/, 'whose UPID the worker printed first');
is(PVE::Isolib::Client->new()->task_status($task->{upid})->{exitstatus}, 'OK', 'and which ended OK');

# Removed by hand, with its catalog record.
unlink($dest);
unlink(File::Basename::dirname($dest) . '/.isolib-catalog/' . File::Basename::basename($dest) . '.json');
$out = run_tainted("$env->{tmp}/absent.sock", @args);
like($out, qr/^ERROR: isolib daemon not reachable at '\Q$env->{tmp}\E\/absent\.sock': /,
    'a missing daemon is reported as unreachable');
unlike($out, qr/Insecure dependency/, 'not as a taint failure');

$out = run_tainted('relative.sock', @args);
is($out, "ERROR: isolib: socket path 'relative.sock' is not an absolute path\n",
    'a relative socket path is refused by name');
is_deeply(files_below($env->{isos}), [], 'the failed downloads left nothing in the storage');

done_testing();
