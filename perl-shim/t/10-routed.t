#!/usr/bin/perl
# A download into an isolib storage through PVE's download-url path is carried out by a real
# daemon: the file lands, the daemon's log lines become the PVE task's, wget is not called.
# Run (from the repository root):
#   ISOLIB_BIN=target/debug/isolib prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/10-routed.t

use strict;
use warnings;

use Test::More;

use Digest::SHA qw(sha256_hex);
use IO::Compress::Gzip qw(gzip $GzipError);

use PVE::Storage;
use PVE::Isolib::Client;
use IsolibTest qw(setup start_daemon start_origin run_worker wait_worker files_below find_task slurp);
use IsolibTest::DownloadUrl;

my $env = setup();
start_daemon($env);

srand(42);
my $data = join('', map { chr(int(rand(256))) } 1 .. 3 * 1024 * 1024 + 123);
gzip(\$data => \my $gz) or die "gzip: $GzipError";
my $origin = start_origin('/debian.iso' => { body => $data }, '/debian.iso.gz' => { body => $gz });
my $calls = "$env->{tmp}/wget-calls.log";
$ENV{PVE_TOOLS_STANDIN_CALL_LOG} = $calls;
my $client = PVE::Isolib::Client->new();
my $first_upid;

sub daemon_log_lines {
    my ($upid) = @_;
    my ($log) = $client->task_log($upid, 0);
    return [map { $_->{t} } @$log];
}

{
    my ($worker, $dest) = IsolibTest::DownloadUrl::prepare({
        node => 'localhost', storage => 'isos', content => 'iso', filename => 'debian.iso',
        url => "$origin/debian.iso", checksum => uc(sha256_hex($data)),
        'checksum-algorithm' => 'sha256',
    });
    is($dest, "$env->{isos}/template/iso/debian.iso", 'destination in the isolib storage');

    # Started by alice in PVE's web UI: PVE's worker carries her in its UPID.
    my $res = wait_worker(run_worker($env, 'routed', $worker, user => 'alice@pve'));
    is($res->{final}, 'TASK OK', 'the PVE task succeeded');
    ok(slurp($dest) eq $data, 'the file landed with the origin bytes');
    is_deeply(files_below($env->{isos}), ['template/iso/debian.iso'], 'and nothing else');
    ok(!-e $calls, 'the original (wget) function was not called');

    my @tasks = find_task('debian.iso');
    is(scalar(@tasks), 1, 'the daemon ran one download task') or BAIL_OUT('no daemon task');
    my $task = $tasks[0];
    $first_upid = $task->{upid};
    my $status = $client->task_status($task->{upid});
    is($status->{status}, 'stopped', 'daemon task stopped');
    is($status->{exitstatus}, 'OK', 'daemon task OK');

    is($task->{user}, 'alice@pve', "the daemon's task is the PVE user's, not the socket peer's");
    like($task->{upid}, qr/:download:debian\.iso:alice\@pve:$/, 'in its UPID too');
    is($res->{isolib}, $task->{upid}, "PVE's task log names the daemon's task first");

    my $daemon = daemon_log_lines($task->{upid});
    is($daemon->[-1], 'TASK OK', "the daemon's log ends with its final line");
    is($daemon->[0], "PVE task: $res->{upid}", "the daemon's log names PVE's task first");
    is_deeply($res->{lines}, [@$daemon[0 .. $#$daemon - 1]],
        "the PVE task log holds the daemon's lines, in order, without its final line");
    is($res->{lines}->[1], "downloading $origin/debian.iso to $dest", 'then the download');
    ok((grep { $_ eq 'calculating checksum...OK, checksum verified' } @{ $res->{lines} }),
        'the checksum reached the daemon');
}

{
    # Status.pm turns compression=gz into a decompression command; the daemon gets 'gz' back.
    my ($worker, $dest) = IsolibTest::DownloadUrl::prepare({
        node => 'localhost', storage => 'isos', content => 'iso', filename => 'unpacked.iso',
        url => "$origin/debian.iso.gz", compression => 'gz', 'verify-certificates' => 0,
    });
    my $res = wait_worker(run_worker($env, 'gz', $worker));
    is($res->{final}, 'TASK OK', 'compressed download succeeded');
    ok(slurp($dest) eq $data, 'the daemon decompressed it');
    ok(!-e $calls, 'still no wget call');
    my $daemon = daemon_log_lines(find_task('unpacked.iso')->{upid});
    is_deeply($res->{lines}, [@$daemon[0 .. $#$daemon - 1]], "the daemon's lines");
}

{
    # The daemon refuses what PVE would refuse in its task: an existing file without checksum.
    my ($worker, $dest) = IsolibTest::DownloadUrl::prepare({
        node => 'localhost', storage => 'isos', content => 'iso', filename => 'debian.iso',
        url => "$origin/debian.iso",
    });
    my $res = wait_worker(run_worker($env, 'exists', $worker));
    my ($task) = grep { $_->{upid} ne $first_upid } find_task('debian.iso');
    my $status = $client->task_status($task->{upid});
    is($res->{final}, "TASK ERROR: $status->{exitstatus}", "the PVE task ends with the daemon's error");
    is($status->{exitstatus}, "refusing to override existing file '$dest'", "PVE's text");
    ok(slurp($dest) eq $data, 'the existing file is untouched');
}

done_testing();
