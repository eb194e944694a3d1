#!/usr/bin/perl
# A download into an isolib storage while the daemon is not there: the router dies at once
# with a message naming the socket, and never falls back to wget.
# Run: prove -I perl-shim/lib -I perl-shim/t/lib perl-shim/t/14-daemon-down.t

use strict;
use warnings;

use Test::More;

use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);

use PVE::Storage;
use PVE::Tools;
use IsolibTest qw(setup files_below);
use IsolibTest::DownloadUrl;

my $env = setup();

# A hang would stall prove forever; this turns it into a failure.
$SIG{ALRM} = sub { die "hung\n" };

my $stale = "$env->{tmp}/stale.sock";
{
    # Bound and closed without unlink: the file stays, nobody listens (a crashed daemon).
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $stale, Listen => 1)
        or die "unable to create '$stale': $!";
    close($s);
}

my %cases = (
    'no socket file' => ["$env->{tmp}/absent.sock", 'No such file or directory'],
    'stale socket file' => [$stale, 'Connection refused'],
);
for my $case (sort keys %cases) {
    my ($sock, $why) = @{ $cases{$case} };
    local $ENV{ISOLIB_SOCKET} = $sock;
    @PVE::Tools::DOWNLOAD_CALLS = ();

    my $worker = IsolibTest::DownloadUrl::prepare({
        node => 'localhost', storage => 'isos', content => 'iso', filename => 'down.iso',
        url => 'http://127.0.0.1:9/down.iso',
    });
    alarm(60);
    eval { $worker->() };
    my $err = $@;
    alarm(0);
    is($err, "isolib daemon not reachable at '$sock': $why\n", "$case: dies naming the socket");
    is(scalar(@PVE::Tools::DOWNLOAD_CALLS), 0, "$case: no fallback to wget");
    is_deeply(files_below($env->{isos}), [], "$case: nothing written");
}

{
    delete local $ENV{ISOLIB_SOCKET};
    is(PVE::Isolib::Client::socket_path(), '/run/isolib/isolib.sock', 'default socket path');
}

done_testing();
