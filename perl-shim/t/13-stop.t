#!/usr/bin/perl
# PVE's task stop (SIGTERM to the worker) while the daemon downloads: the router stops the
# daemon task first, then dies with its exit status; no file is left under the name.
# Run (from the repository root):
#   ISOLIB_BIN=target/debug/isolib prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/13-stop.t

use strict;
use warnings;

use Test::More;

use PVE::Storage;
use PVE::Isolib::Client;
use IsolibTest qw(setup start_daemon start_origin run_worker wait_worker wait_for files_below
    find_task slurp);
use IsolibTest::DownloadUrl;

my $env = setup();
start_daemon($env);

# 1 GiB announced, trickled: the download is still running whenever the stop comes.
my $origin = start_origin('/slow.iso' => { slow => 1024 * 1024 * 1024 });
my $calls = "$env->{tmp}/wget-calls.log";
$ENV{PVE_TOOLS_STANDIN_CALL_LOG} = $calls;
my $client = PVE::Isolib::Client->new();

my ($worker, $dest) = IsolibTest::DownloadUrl::prepare({
    node => 'localhost', storage => 'isos', content => 'iso', filename => 'slow.iso',
    url => "$origin/slow.iso",
});
my $w = run_worker($env, 'stop', $worker);

# The router copies the daemon's lines once the daemon task exists; the stop comes after the
# daemon's first line is there, so what is asserted below does not race the copy.
wait_for("the daemon's first line", sub { (slurp($w->{log}) // '') =~ m/^downloading /m });
my $task = find_task('slow.iso');
ok($task, 'the daemon task exists') or BAIL_OUT('no daemon task');
is($client->task_status($task->{upid})->{status}, 'running', 'and is running before the stop');

kill('TERM', $w->{pid});
my $res = wait_worker($w);

my $status = $client->task_status($task->{upid});
is($status->{status}, 'stopped', 'the stop reached the daemon task');
isnt($status->{exitstatus}, 'OK', 'which did not finish');
is($res->{final}, "TASK ERROR: $status->{exitstatus}", "PVE task ends with the daemon's status");
is($res->{err}, "$status->{exitstatus}\n", 'the router died with exactly that text');
is($res->{lines}->[1], "downloading $origin/slow.iso to $dest", "the daemon's lines were copied");
ok(!-e $dest, 'no file under the name');
is_deeply(files_below($env->{isos}), [], 'no temp file left in the storage');
ok(!-e $calls, 'the original (wget) function was not called');

done_testing();
