package PVE::Isolib::Ensure;

# A volume of an isolib storage that this node lacks when a guest needs it (the seed's
# ensureLocal: a VM started or migrated onto a node whose storage has no copy of its ISO).
# activate_volume asks the daemon to copy it from a node that holds it (POST
# /cluster/isolib/ensure for this node), copies the daemon's log lines into PVE's task log and
# waits, for at most $BUDGET seconds. A volume that is there never reaches this code.

use strict;
use warnings;

use Encode ();
use Time::HiRes ();

use PVE::Isolib::Client;
use PVE::Isolib::Router;

# Seconds a guest start may wait for its volume to arrive.
our $BUDGET = 600;

# Makes "$storeid:$volname" present on this node; dies with the reason when it cannot.
sub ensure_volume {
    my ($storeid, $volname) = @_;

    my $volid = "$storeid:$volname";
    my $client = PVE::Isolib::Client->new();
    my $env = $client->api(
        'POST', '/api2/json/cluster/isolib/ensure',
        json => { volume => $volid, nodes => 'localhost' },
    );
    my $upid = $env->{data};
    die "isolib daemon returned no task id\n"
        if !defined($upid) || ref($upid) || $upid !~ m/^UPID:/;
    {
        local $| = 1;
        print "isolib: '$volid' is not on this node; copying it from another node (task $upid)\n";
    }

    my $deadline = Time::HiRes::time() + $BUDGET;
    my $seen = 0;
    while (1) {
        my $status = $client->task_status($upid, timeout => $PVE::Isolib::Router::POLL_TIMEOUT);
        $seen = PVE::Isolib::Router::copy_log($client, $upid, $seen);
        if (($status->{status} // '') eq 'stopped') {
            my $exit = $status->{exitstatus} // 'unexpected status';
            return if $exit eq 'OK';
            $exit = Encode::encode_utf8($exit) if utf8::is_utf8($exit);
            die "$exit\n";
        }
        if (Time::HiRes::time() > $deadline) {
            PVE::Isolib::Router::stop_daemon_task($client, $upid);
            die "no copy after ${BUDGET}s\n";
        }
        Time::HiRes::sleep($PVE::Isolib::Router::POLL_INTERVAL);
    }
}

1;
