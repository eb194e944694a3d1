#!/usr/bin/perl
# A daemon task that fails (checksum mismatch): the router dies with exactly the daemon's exit
# status, so PVE's task ends "TASK ERROR: <same text>", and no file is left.
# Run (from the repository root):
#   ISOLIB_BIN=target/debug/isolib prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/12-checksum-mismatch.t

use strict;
use warnings;

use Test::More;

use Digest::SHA qw(sha256_hex);

use PVE::Storage;
use PVE::Isolib::Client;
use IsolibTest qw(setup start_daemon start_origin run_worker wait_worker files_below find_task);
use IsolibTest::DownloadUrl;

my $env = setup();
start_daemon($env);

my $data = join('', map { chr(($_ * 13) % 256) } 1 .. 1_000_000);
my $origin = start_origin('/bad.iso' => { body => $data });
my $calls = "$env->{tmp}/wget-calls.log";
$ENV{PVE_TOOLS_STANDIN_CALL_LOG} = $calls;
my $client = PVE::Isolib::Client->new();
my $wrong = 'ab' x 32;
my $mismatch = qr/^checksum mismatch: got '\Q${\ sha256_hex($data)}\E' != expect '$wrong'$/;

sub prepare {
    my ($filename) = @_;
    return IsolibTest::DownloadUrl::prepare({
        node => 'localhost', storage => 'isos', content => 'iso', filename => $filename,
        url => "$origin/bad.iso", checksum => $wrong, 'checksum-algorithm' => 'sha256',
    });
}

{
    # In-process, to see the die text byte for byte.
    my ($worker, $dest) = prepare('in-process.iso');
    my $out = '';
    open(my $fh, '>', \$out) or die $!;
    my $old = select($fh);
    eval { $worker->() };
    my $err = $@;
    select($old);

    my $status = $client->task_status(find_task('in-process.iso')->{upid});
    is($status->{status}, 'stopped', 'daemon task stopped');
    like($status->{exitstatus}, $mismatch, "daemon exit status is PVE's checksum text");
    is($err, "$status->{exitstatus}\n", 'the router died with exactly that text');
    like($out, qr/^calculating checksum\.\.\.$/m, "the daemon's lines were copied");
    ok(!-e $dest, 'no file under the name');
}

{
    # In a PVE-like worker: the task's final line.
    my ($worker, $dest) = prepare('worker.iso');
    my $res = wait_worker(run_worker($env, 'mismatch', $worker));
    my $status = $client->task_status(find_task('worker.iso')->{upid});
    like($status->{exitstatus}, $mismatch, 'daemon exit status');
    is($res->{final}, "TASK ERROR: $status->{exitstatus}", 'PVE task ends with the same text');
    ok(!-e $dest, 'no file under the name');
}

is_deeply(files_below($env->{isos}), [], 'no file or temp file left in the storage');
ok(!-e $calls, 'the original (wget) function was not called');

done_testing();
