package PVE::Isolib::Client;

# A minimal client for the isolib daemon's PVE-compatible API over its local Unix socket.
#
# Core Perl only: HTTP::Tiny cannot talk to a Unix socket, so this writes one HTTP/1.1 request
# per connection (Connection: close, Content-Length) and reads the answer until EOF. The daemon
# identifies the caller by SO_PEERCRED (uid 0, or its own uid, is root@pam), so no credentials
# are sent. Every step has a deadline, because this runs inside PVE workers and API daemons
# where a hung call would hang a task or a VM start.

use strict;
use warnings;

use Encode ();
use Errno ();
use IO::Select;
use IO::Socket::UNIX;
use JSON::PP;
use Socket qw(SOCK_STREAM);
use Time::HiRes ();

our $DEFAULT_SOCKET = '/run/isolib/isolib.sock';

# Default deadline for one request, connect to last byte.
our $DEFAULT_TIMEOUT = 30;

# The answers we read are small JSON documents; this only guards memory against a broken peer.
my $MAX_RESPONSE = 64 * 1024 * 1024;

# PVE maps node 'localhost' to the local node; the daemon does the same.
my $NODE_PREFIX = '/api2/json/nodes/localhost';

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

sub socket_path {
    my $env = $ENV{ISOLIB_SOCKET};
    return defined($env) && length($env) ? $env : $DEFAULT_SOCKET;
}

# pvedaemon runs under `perl -T`, where a socket path from the environment is tainted and
# connect() refuses it. Any absolute path is a fine place for a socket; the regex both checks
# that and launders the value.
sub checked_socket_path {
    my ($path) = @_;
    my ($ok) = $path =~ m!^(/[^\0]*)\z!
        or die "isolib: socket path '$path' is not an absolute path\n";
    return $ok;
}

sub new {
    my ($class, %args) = @_;
    return bless {
        socket => checked_socket_path($args{socket} // socket_path()),
        timeout => $args{timeout} // $DEFAULT_TIMEOUT,
    }, $class;
}

sub socket_file { return $_[0]->{socket} }

# Percent-encodes everything but RFC 3986 unreserved characters (plus ':', '@' and '!', which
# UPIDs contain and which are legal in a path segment).
sub uri_escape {
    my ($s) = @_;
    $s = Encode::encode_utf8($s);
    $s =~ s/([^A-Za-z0-9\-._~:@!])/sprintf('%%%02X', ord($1))/ge;
    return $s;
}

sub query_string {
    my ($params) = @_;
    return '' if !$params || !%$params;
    return '?' . join('&', map { uri_escape($_) . '=' . uri_escape($params->{$_}) } sort keys %$params);
}

# One raw exchange. Returns { code, reason, headers, body, data } where data is the decoded
# JSON body (undef when the body is empty or not JSON). Dies on transport failures only.
sub request {
    my ($self, $method, $path, %opt) = @_;

    my $timeout = $opt{timeout} // $self->{timeout};
    my $deadline = Time::HiRes::time() + $timeout;
    my $sockpath = $self->{socket};

    my $body = '';
    my @headers = (
        "Host: localhost",
        "User-Agent: isolib-pve-shim",
        "Accept: application/json",
        "Connection: close",
    );
    for my $name (sort keys %{ $opt{headers} // {} }) {
        my $value = $opt{headers}->{$name};
        die "isolib: bad header '$name'\n" if "$name$value" =~ m/[\r\n]/;
        push @headers, "$name: $value";
    }
    if (defined($opt{json})) {
        $body = $JSON->encode($opt{json});
        push @headers, "Content-Type: application/json";
    }
    push @headers, "Content-Length: " . length($body) if length($body) || $method ne 'GET';
    my $target = $path . query_string($opt{query});
    my $req = "$method $target HTTP/1.1\r\n" . join('', map { "$_\r\n" } @headers) . "\r\n" . $body;

    my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $sockpath, Timeout => $timeout)
        or die "isolib daemon not reachable at '$sockpath': " . ($! || $@ || 'unknown error') . "\n";
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);

    my $timed_out = sub {
        die "isolib daemon at '$sockpath' did not answer '$method $path' within ${timeout}s\n";
    };

    my $off = 0;
    while ($off < length($req)) {
        my $left = $deadline - Time::HiRes::time();
        $timed_out->() if $left <= 0;
        # An empty result is a timeout or EINTR (a signal whose handler did not die); the
        # deadline check above tells them apart.
        next if !$sel->can_write($left);
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        if (!defined($n)) {
            next if $!{EINTR} || $!{EAGAIN};
            die "isolib daemon at '$sockpath': write failed: $!\n";
        }
        $off += $n;
    }

    my $raw = '';
    while (1) {
        my $left = $deadline - Time::HiRes::time();
        $timed_out->() if $left <= 0;
        next if !$sel->can_read($left);
        my $n = sysread($sock, $raw, 65536, length($raw));
        if (!defined($n)) {
            next if $!{EINTR} || $!{EAGAIN};
            die "isolib daemon at '$sockpath': read failed: $!\n";
        }
        last if $n == 0;
        die "isolib daemon at '$sockpath' sent an oversized response\n" if length($raw) > $MAX_RESPONSE;
    }
    close($sock);

    return parse_response($raw, $sockpath);
}

sub parse_response {
    my ($raw, $sockpath) = @_;

    my $bad = sub { die "isolib daemon at '$sockpath' sent a malformed response ($_[0])\n" };

    my $end = index($raw, "\r\n\r\n");
    $bad->('no end of header') if $end < 0;
    my $head = substr($raw, 0, $end);
    my $body = substr($raw, $end + 4);

    my ($status_line, @lines) = split(/\r\n/, $head);
    my ($code, $reason) = ($status_line // '') =~ m!^HTTP/1\.[01] (\d{3})(?: (.*))?$!
        or $bad->('bad status line');

    my $headers = {};
    for my $line (@lines) {
        my ($k, $v) = $line =~ m/^([^:]+):\s*(.*?)\s*$/ or $bad->('bad header line');
        $headers->{ lc($k) } = $v;
    }

    if (($headers->{'transfer-encoding'} // '') =~ m/\bchunked\b/i) {
        my $decoded = '';
        while (1) {
            $body =~ s/^([0-9A-Fa-f]+)[^\r\n]*\r\n// or $bad->('bad chunk header');
            my $len = hex($1);
            last if $len == 0;
            $bad->('short chunk') if length($body) < $len + 2;
            $decoded .= substr($body, 0, $len);
            substr($body, 0, $len + 2, '');
        }
        $body = $decoded;
    } elsif (defined(my $len = $headers->{'content-length'})) {
        $bad->('bad content-length') if $len !~ m/^\d+$/;
        $bad->('short body') if length($body) < $len;
        $body = substr($body, 0, $len);
    }

    my $data;
    if (length($body)) {
        $data = eval { $JSON->decode($body) };
    }

    return {
        code => $code + 0,
        reason => $reason // '',
        headers => $headers,
        body => $body,
        data => $data,
    };
}

# An API call: returns the decoded envelope ({data => ..., total => ...}) on 2xx, dies with
# the daemon's message otherwise (the same message PVE would show).
sub api {
    my ($self, $method, $path, %opt) = @_;

    my $res = $self->request($method, $path, %opt);
    return $res->{data} // {} if $res->{code} >= 200 && $res->{code} < 300;

    my $env = ref($res->{data}) eq 'HASH' ? $res->{data} : {};
    my $msg = $env->{message} // $res->{reason};
    $msg = "HTTP $res->{code}" if !defined($msg) || !length($msg);
    chomp($msg);
    if (ref($env->{errors}) eq 'HASH' && %{ $env->{errors} }) {
        my $errors = $env->{errors};
        $msg .= ' (' . join('; ', map { "$_: $errors->{$_}" } sort keys %$errors) . ')';
    }
    $msg = Encode::encode_utf8($msg) if utf8::is_utf8($msg);
    die "isolib daemon: $msg\n";
}

sub start_download {
    my ($self, $storage, $params, %opt) = @_;
    my $env = $self->api(
        'POST', "$NODE_PREFIX/storage/" . uri_escape($storage) . '/download-url',
        json => $params, %opt,
    );
    my $upid = $env->{data};
    die "isolib daemon at '$self->{socket}' returned no task id\n"
        if !defined($upid) || ref($upid) || $upid !~ m/^UPID:/;
    return $upid;
}

sub task_status {
    my ($self, $upid, %opt) = @_;
    my $env = $self->api('GET', "$NODE_PREFIX/tasks/" . uri_escape($upid) . '/status', %opt);
    return $env->{data} // {};
}

# Lines from 0-based offset $start on; limit 0 means all remaining (PVE's dump_logfile rule).
sub task_log {
    my ($self, $upid, $start, %opt) = @_;
    my $env = $self->api(
        'GET', "$NODE_PREFIX/tasks/" . uri_escape($upid) . '/log',
        query => { start => $start // 0, limit => 0 }, %opt,
    );
    return ($env->{data} // [], $env->{total} // 0);
}

sub stop_task {
    my ($self, $upid, %opt) = @_;
    $self->api('DELETE', "$NODE_PREFIX/tasks/" . uri_escape($upid), %opt);
    return;
}

sub list_tasks {
    my ($self, $query, %opt) = @_;
    my $env = $self->api('GET', "$NODE_PREFIX/tasks", query => $query, %opt);
    return $env->{data} // [];
}

1;
