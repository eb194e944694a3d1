package IsolibTest::Canned;

# A scripted HTTP server on a Unix socket, standing in for the daemon where a test needs an
# answer the real one would not give at that moment (silence, a delayed answer, going away).
# Each step serves one connection: the request is appended to "<socket>.requests", the file
# $step->{received} is created, the server waits for $step->{release} to exist if given, then
# writes $step->{response} (undef: never answers; a code ref is called with the request and
# the earlier requests and returns the response). After the last step the socket is removed.

use strict;
use warnings;

use Exporter qw(import);
use IO::Socket::UNIX;
use POSIX ();
use Socket qw(SOCK_STREAM);
use Time::HiRes ();

our @EXPORT_OK = qw(canned_server json_response chunked_response requests);

my $PARENT = $$;
my @SERVERS;

sub json_response {
    my ($status, $body) = @_;
    return "HTTP/1.1 $status\r\nContent-Type: application/json\r\nContent-Length: "
        . length($body) . "\r\n\r\n$body";
}

sub chunked_response {
    my ($status, @chunks) = @_;
    return "HTTP/1.1 $status\r\nTransfer-Encoding: chunked\r\n\r\n"
        . join('', map { sprintf("%x\r\n%s\r\n", length($_), $_) } @chunks) . "0\r\n\r\n";
}

sub requests {
    my ($sock) = @_;
    open(my $fh, '<', "$sock.requests") or return [];
    local $/;
    my $all = <$fh>;
    close($fh);
    return [split(/\n--\n/, $all)];
}

sub canned_server {
    my ($sock, @steps) = @_;

    unlink($sock);
    my $listen = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $sock, Listen => 8)
        or die "unable to listen on '$sock': $!\n";
    my $pid = fork() // die "fork failed: $!\n";
    if (!$pid) {
        my @seen;
        for my $step (@steps) {
            my $c = $listen->accept() or POSIX::_exit(1);
            my $req = '';
            while ($req !~ m/\r\n\r\n/) {
                sysread($c, $req, 4096, length($req)) or last;
            }
            my ($len) = $req =~ m/Content-Length: (\d+)/i;
            my $body_at = index($req, "\r\n\r\n") + 4;
            while ($len && length($req) - $body_at < $len) {
                sysread($c, $req, 4096, length($req)) or last;
            }
            open(my $fh, '>>', "$sock.requests") or POSIX::_exit(1);
            print $fh $req, "\n--\n";
            close($fh);
            if (my $mark = $step->{received}) {
                open(my $m, '>', $mark) or POSIX::_exit(1);
                close($m);
            }
            if (my $release = $step->{release}) {
                Time::HiRes::sleep(0.02) while !-e $release;
            }
            my $response = $step->{response};
            $response = $response->($req, [@seen]) if ref($response) eq 'CODE';
            push @seen, $req;
            if (defined($response)) {
                syswrite($c, $response);
                close($c);
            } else {
                sleep(3600);
            }
        }
        close($listen);
        unlink($sock);
        POSIX::_exit(0);
    }
    close($listen);
    push @SERVERS, $pid;
    return $pid;
}

END {
    if ($$ == $PARENT) {
        my $status = $?;
        for my $pid (@SERVERS) {
            kill('KILL', $pid);
            waitpid($pid, 0);
        }
        $? = $status;
    }
}

1;
