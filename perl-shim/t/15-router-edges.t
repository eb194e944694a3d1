#!/usr/bin/perl
# Router edge cases that need the daemon to answer at a chosen moment, so a scripted server
# plays the daemon: a stop that arrives while the download is being started (the task that
# is then created must be stopped, not left running), and a daemon that goes away while a task
# is followed (the worker dies naming the socket instead of waiting forever).
# Run: prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/15-router-edges.t

use strict;
use warnings;

use Test::More;

use PVE::Storage;
use IsolibTest qw(setup run_worker wait_worker wait_for);
use IsolibTest::Canned qw(canned_server json_response requests);
use IsolibTest::DownloadUrl;

my $env = setup();
my $sock = "$env->{tmp}/canned.sock";
$ENV{ISOLIB_SOCKET} = $sock;
my $upid = 'UPID:testnode:0000ABCD:00000001:00000002:download:a.iso:root@pam:';
my $stopped = 'download failed: received interrupt';

sub worker {
    my ($name) = @_;
    my ($code) = IsolibTest::DownloadUrl::prepare({
        node => 'localhost', storage => 'isos', content => 'iso', filename => 'a.iso',
        url => 'http://127.0.0.1:9/a.iso',
    });
    return run_worker($env, $name, $code);
}

subtest 'SIGTERM while the download is being started' => sub {
    my ($received, $release) = ("$env->{tmp}/post-received", "$env->{tmp}/post-release");
    # After the POST: DELETE stops the task; status says running until then.
    my $daemon = sub {
        my ($req, $seen) = @_;
        my $deleted = grep { m/^DELETE / } @$seen, $req;
        return json_response('200 OK', '{"data":null}') if $req =~ m/^DELETE /;
        return json_response('200 OK', '{"data":[],"total":0}') if $req =~ m{/log\?};
        return json_response('200 OK', $deleted
            ? qq({"data":{"status":"stopped","exitstatus":"$stopped"}})
            : '{"data":{"status":"running"}}');
    };
    canned_server(
        $sock,
        { received => $received, release => $release,
          response => json_response('200 OK', qq({"data":"$upid"})) },
        map { { response => $daemon } } 1 .. 50,
    );

    my $w = worker('stop-at-start');
    wait_for('the POST', sub { -e $received });
    kill('TERM', $w->{pid});
    open(my $fh, '>', $release) or die $!;
    close($fh);
    my $res = wait_worker($w);

    my @deletes = grep { m/^DELETE / } @{ requests($sock) };
    is(scalar(@deletes), 1, 'the task created by the interrupted start was stopped');
    like($deletes[0] // '', qr{^DELETE /api2/json/nodes/localhost/tasks/\Q$upid\E HTTP/1\.1\r\n},
        '... by its UPID');
    is($res->{final}, "TASK ERROR: $stopped", "the worker ends with the daemon's status");
};

subtest 'the daemon goes away while a task is followed' => sub {
    unlink("$sock.requests");
    canned_server(
        $sock,
        { response => json_response('200 OK', qq({"data":"$upid"})) },
        { response => json_response('200 OK', '{"data":{"status":"running"}}') },
        { response => json_response('200 OK', '{"data":[{"n":1,"t":"downloading x"}],"total":1}') },
    );
    my $res = wait_worker(worker('gone'));
    is($res->{lines}->[0], 'downloading x', 'lines copied while it was there');
    # Refused or reset, depending on how far the server got in closing: either names the socket.
    like($res->{err}, qr/^isolib daemon (?:not reachable )?at '\Q$sock\E'/,
        'then the worker died naming the socket');
    my $err = $res->{err} // '';
    chomp($err);
    is($res->{final}, "TASK ERROR: $err", 'as the PVE task error');
};

done_testing();
