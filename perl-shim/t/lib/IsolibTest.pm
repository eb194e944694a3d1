package IsolibTest;

# Test harness for the shim: a temp dir with storage.cfg (read by both the PVE stand-ins and the
# daemon), a real isolib daemon process on a Unix socket, a local HTTP origin, and a stand-in
# for PVE's fork_worker. Everything started here is stopped in END, by pid, in the process that
# started it; forked children leave through POSIX::_exit so they never run that cleanup.

use strict;
use warnings;

use Cwd ();
use Exporter qw(import);
use File::Basename ();
use File::Find ();
use File::Path ();
use File::Temp ();
use IO::Socket::INET;
use POSIX ();
use Test::More ();
use Time::HiRes ();

use PVE::Cluster ();
use PVE::Isolib::Client;

our @EXPORT_OK = qw(
    isolib_bin setup start_daemon start_origin run_worker wait_worker wait_for
    files_below find_task slurp
);

my $PARENT = $$;
my @DAEMONS;
my @ORIGINS;

# Upper bound for waiting on something the test itself started (the daemon's socket, a worker).
# Reaching it fails the test; it is not a performance threshold.
our $WAIT_LIMIT = 120;

# The daemon under test: $ISOLIB_BIN, else the workspace's debug build next to perl-shim/.
sub isolib_bin {
    my $bin = $ENV{ISOLIB_BIN};
    if (!defined($bin) || !length($bin)) {
        my $shim = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../..');
        $bin = "$shim/../target/debug/isolib";
    }
    return $bin;
}

# Skips the whole test file when no daemon binary was asked for and none is built; one named by
# ISOLIB_BIN must be usable, so a broken setup cannot pass as skipped.
sub require_daemon {
    my $bin = isolib_bin();
    my $asked = defined($ENV{ISOLIB_BIN}) && length($ENV{ISOLIB_BIN});
    if (!-x $bin) {
        Test::More::BAIL_OUT("ISOLIB_BIN '$bin' is not an executable") if $asked;
        Test::More::plan(skip_all => "no isolib binary at '$bin' (set ISOLIB_BIN)");
    }
    my $help = qx{"$bin" serve --help 2>&1};
    Test::More::BAIL_OUT("'$bin serve' has no --socket option") if $help !~ m/--socket\b/;
    return ($bin, $help);
}

sub slurp {
    my ($path) = @_;
    open(my $fh, '<', $path) or return undef;
    local $/;
    my $data = <$fh>;
    close($fh);
    return $data;
}

sub spew {
    my ($path, $data) = @_;
    open(my $fh, '>', $path) or die "unable to write '$path': $!\n";
    binmode($fh);
    print {$fh} $data;
    close($fh) or die "unable to write '$path': $!\n";
}

# A temp dir with storage.cfg: isolib storage `isos` and dir storage `plain`. The PVE stand-ins
# read it through $PVE::Cluster::CFS_DIR, the daemon through --storage-cfg, and the router finds
# the daemon through ISOLIB_SOCKET.
sub setup {
    my $tmp = File::Temp::tempdir('isolib-shim-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $env = {
        tmp => $tmp,
        isos => "$tmp/isos",
        plain => "$tmp/plain",
        socket => "$tmp/isolib.sock",
    };
    File::Path::make_path($env->{isos}, $env->{plain});
    spew(
        "$tmp/storage.cfg",
        "isolib: isos\n\tpath $env->{isos}\n\tcontent iso,vztmpl,import\n\n"
            . "dir: plain\n\tpath $env->{plain}\n\tcontent iso,vztmpl\n",
    );
    $PVE::Cluster::CFS_DIR = $tmp;
    $ENV{ISOLIB_SOCKET} = $env->{socket};
    # Origins are on 127.0.0.1; a proxy from the environment must not get in between.
    delete @ENV{qw(http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY)};
    return $env;
}

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 1)
        or die "unable to find a free port: $!\n";
    my $port = $s->sockport();
    close($s);
    return $port;
}

# Polls $cond until true; dies with $what after $WAIT_LIMIT seconds.
sub wait_for {
    my ($what, $cond) = @_;
    my $deadline = time() + $WAIT_LIMIT;
    while (!$cond->()) {
        die "timed out waiting for $what\n" if time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    return;
}

sub start_daemon {
    my ($env) = @_;

    my ($bin, $help) = require_daemon();
    my $port = free_port();
    my @cmd = (
        $bin, 'serve',
        '--state-dir' => $env->{tmp},
        '--storage-cfg' => "$env->{tmp}/storage.cfg",
        '--socket' => $env->{socket},
        '--tls' => 'false',
        '--listen' => "127.0.0.1:$port",
        '--node' => 'testnode',
    );
    # On a PVE host the daemon would otherwise pick up /etc/pve.
    push @cmd, '--pve-dir' => 'none' if $help =~ m/--pve-dir\b/;
    my $log = "$env->{tmp}/daemon.log";
    my $pid = fork() // die "fork failed: $!\n";
    if (!$pid) {
        open(STDOUT, '>', $log) or POSIX::_exit(126);
        open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
        exec(@cmd) or POSIX::_exit(127);
    }
    push @DAEMONS, $pid;
    $env->{daemon_pid} = $pid;

    wait_for('the daemon socket', sub {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            @DAEMONS = grep { $_ != $pid } @DAEMONS;
            die "daemon exited with status $?:\n" . (slurp($log) // '') . "\n";
        }
        return -S $env->{socket};
    });
    return $pid;
}

# A forked HTTP/1.1 origin on 127.0.0.1. Routes: path => { body => $bytes } serves the bytes;
# path => { slow => $size } announces $size bytes and trickles them, so a download stays
# running until it is stopped.
sub start_origin {
    my (%routes) = @_;

    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16, ReuseAddr => 1,
    ) or die "unable to listen: $!\n";
    my $port = $listen->sockport();

    my $pid = fork() // die "fork failed: $!\n";
    if (!$pid) {
        setpgrp(0, 0);
        $SIG{CHLD} = 'IGNORE';
        $SIG{PIPE} = 'IGNORE';
        while (1) {
            my $conn = $listen->accept() or next;
            my $kid = fork();
            if (defined($kid) && !$kid) {
                close($listen);
                eval { serve_origin_request($conn, \%routes) };
                POSIX::_exit(0);
            }
            close($conn);
        }
    }
    close($listen);
    push @ORIGINS, $pid;
    return "http://127.0.0.1:$port";
}

sub serve_origin_request {
    my ($conn, $routes) = @_;

    local $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm($WAIT_LIMIT);
    my $head = '';
    while ($head !~ m/\r\n\r\n/) {
        my $n = sysread($conn, $head, 4096, length($head));
        return if !$n;
    }
    alarm(0);
    my ($method, $path) = $head =~ m/^(\S+) (\S+) HTTP/ or return;
    my $route = $routes->{$path};
    if (!$route) {
        write_all($conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    my $size = defined($route->{body}) ? length($route->{body}) : $route->{slow};
    write_all($conn, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        . "Content-Length: $size\r\nConnection: close\r\n\r\n") or return;
    return if $method eq 'HEAD';
    if (defined($route->{body})) {
        write_all($conn, $route->{body});
        return;
    }
    my $chunk = "\0" x 65536;
    for (my $sent = 0; $sent < $size; $sent += length($chunk)) {
        write_all($conn, $chunk) or return;
        Time::HiRes::sleep(0.2);
    }
}

sub write_all {
    my ($fh, $data) = @_;
    my $off = 0;
    while ($off < length($data)) {
        my $n = syswrite($fh, $data, length($data) - $off, $off);
        return 0 if !$n;
        $off += $n;
    }
    return 1;
}

# Stand-in for PVE's fork_worker: a child in its own session, INT/QUIT/TERM dying with
# "received interrupt", STDOUT and STDERR going to the task log, which ends with the line PVE
# writes (TASK OK / TASK ERROR: <error, chomped, newlines as spaces>). The raw error is kept
# next to it so a test can compare it byte for byte.
# Like fork_worker it names the process "task <UPID>", the UPID carrying $opt{user} (root@pam
# unless given), and returns that UPID as {upid}.
sub run_worker {
    my ($env, $name, $code, %opt) = @_;

    my $log = "$env->{tmp}/worker-$name.log";
    my $user = $opt{user} // 'root@pam';
    my $upid = sprintf('UPID:pvenode:%08X:%08X:%08X:download:%s:%s:', $$, 1234, time(), $name, $user);
    my $pid = fork() // die "fork failed: $!\n";
    if (!$pid) {
        $0 = "task $upid";
        POSIX::setsid();
        $SIG{INT} = $SIG{QUIT} = $SIG{TERM} = sub { die "received interrupt\n" };
        open(STDOUT, '>', $log) or POSIX::_exit(126);
        open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
        STDOUT->autoflush(1);
        STDERR->autoflush(1);
        eval { $code->() };
        my $err = $@;
        if ($err) {
            spew("$log.err", $err);
            my $text = $err;
            chomp($text);
            $text =~ s/\n/ /g;
            print "TASK ERROR: $text\n";
        } else {
            print "TASK OK\n";
        }
        POSIX::_exit(0);
    }
    return { pid => $pid, log => $log, upid => $upid };
}

# The worker's log: {lines} without the final line, {final}, {err} (the raw error), and {isolib},
# the daemon UPID from the router's first line, which {lines} then no longer holds.
sub wait_worker {
    my ($worker) = @_;

    wait_for('the worker', sub { waitpid($worker->{pid}, POSIX::WNOHANG()) == $worker->{pid} });
    my @lines = split(/\n/, slurp($worker->{log}) // '');
    my $final = pop(@lines);
    my $isolib;
    ($isolib) = (shift(@lines) =~ m/^isolib task: (UPID:\S+)$/) if @lines && $lines[0] =~ m/^isolib task: /;
    return {
        lines => \@lines, final => $final // '', err => slurp("$worker->{log}.err"),
        isolib => $isolib, upid => $worker->{upid},
    };
}

# Regular files anywhere below $dir (relative names), sorted.
# Every file below $dir, relative to it, sorted. A volume's catalog record
# (.isolib-catalog/<name>.json beside it) counts as part of the volume: it is left out while
# its volume is there and listed when it is an orphan.
sub files_below {
    my ($dir) = @_;
    my @files;
    File::Find::find({ no_chdir => 1, wanted => sub {
        my $path = $File::Find::name;
        return if !-f $path;
        if ($path =~ m{^(.*)/\.isolib-catalog/(.+)\.json$}) {
            return if -f "$1/$2";
        }
        push @files, substr($path, length($dir) + 1);
    } }, $dir);
    return [sort @files];
}

# The daemon's download tasks for $filename (their task id), newest first, looked up over the
# socket. In scalar context the newest.
sub find_task {
    my ($filename) = @_;
    my $client = PVE::Isolib::Client->new();
    my $tasks = $client->list_tasks({ source => 'all', typefilter => 'download', limit => 1000 });
    my @match = sort { $b->{starttime} <=> $a->{starttime} || $b->{upid} cmp $a->{upid} }
        grep { ($_->{id} // '') eq $filename } @$tasks;
    return wantarray ? @match : $match[0];
}

END {
    return if $$ != $PARENT;
    my $status = $?;
    for my $pid (@ORIGINS) {
        kill('TERM', -$pid);
        kill('TERM', $pid);
        waitpid($pid, 0);
    }
    for my $pid (@DAEMONS) {
        kill('TERM', $pid);
        my $deadline = time() + 10;
        while (waitpid($pid, POSIX::WNOHANG()) == 0) {
            if (time() > $deadline) {
                kill('KILL', $pid);
                waitpid($pid, 0);
                last;
            }
            Time::HiRes::sleep(0.05);
        }
    }
    $? = $status;
}

1;
