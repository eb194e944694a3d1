package PVE::Isolib::Router;

# The download router: wraps PVE::Tools::download_file_from_url so that a download whose
# destination is a content directory of an `isolib` storage is carried out by the isolib
# daemon instead of wget.
#
# PVE's download-url handler (pve-storage src/PVE/API2/Storage/Status.pm) calls no plugin
# method that could take the transfer over; inside its worker it calls the fully qualified
# PVE::Tools::download_file_from_url("$dir/$filename", $url, $opts). Replacing that glob is the
# one lever (spec/shim-design.md). Inside the worker, STDOUT is PVE's task log, and a die
# becomes "TASK ERROR: <text>", so copying the daemon's log lines and dying with its exit status
# makes the PVE task read like the daemon's.
#
# Every other destination goes to the original function through `goto`, so it sees the same
# arguments and context and returns the same value.

use strict;
use warnings;

use Encode ();
use JSON::PP ();
use Time::HiRes ();

use PVE::Tools ();
use PVE::Isolib::Client;

# The wrapped PVE::Tools::download_file_from_url; set once by install().
our $ORIGINAL;

# Seconds between polls of the daemon task's status and log.
our $POLL_INTERVAL = 0.5;

# Budget for stopping the daemon task after a stop request (the DELETE, then reading the exit
# status). PVE's task stop sends SIGTERM and SIGKILLs the worker 5 s later, so it must fit well
# inside that.
our $STOP_BUDGET = 4.5;

# Budget for the calls while following a task (a status or log read).
our $POLL_TIMEOUT = 10;

# Content types download-url can target (Status.pm: iso, vztmpl, import).
my @CONTENT_TYPES = qw(iso vztmpl import);

# The order PVE's download_file_from_url picks a checksum in when several are given.
my @CHECKSUM_ORDER = qw(sha512 sha384 sha256 sha224 sha1 md5);

# Status.pm turns `compression` into decompressor_info('iso', $c)->{decompressor}; this maps
# those commands back to the name the daemon's API takes.
my %DECOMPRESSION_NAME = (
    'zcat' => 'gz',
    'lzop -d -c' => 'lzo',
    'zstd -q -d -c' => 'zst',
    'bzcat -q' => 'bz2',
);

# The final line a task log ends with (PVE's fork_worker writes it; so does the daemon). The PVE
# worker running us writes its own, so the daemon's is not copied.
my $FINAL_LINE_RE = qr/^TASK (?:OK|WARNINGS: \d+|ERROR: .*)$/s;

# PVE's fork_worker names its worker process "task <UPID>"; the UPID's user field is the user
# who started the download (Status.pm passes $rpcenv->get_user() to fork_worker).
my $WORKER_NAME_RE = qr/^task (UPID:[^\s:]+:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8}:[^:\s]+:[^:\s]*:[^:\s]+:)$/;

# The header the daemon takes PVE's UPID from; it records the download as that UPID's user.
my $PVE_TASK_HEADER = 'X-Isolib-PVE-Task';

# Placeholders the log endpoint returns instead of lines (PVE's dump_logfile).
my $NO_LINES_RE = qr/^(?:no content|unable to open file - .*)$/s;

sub install {
    return if $ORIGINAL;
    my $orig = PVE::Tools->can('download_file_from_url')
        or die "isolib: PVE::Tools::download_file_from_url not found, cannot route downloads\n";
    $ORIGINAL = $orig;
    no warnings 'redefine';
    *PVE::Tools::download_file_from_url = \&download_file_from_url;
    return;
}

sub download_file_from_url {
    my ($dest, $url, $opts) = @_;

    my $target = find_target($dest);
    goto &$ORIGINAL if !$target;

    return run_routed($target, $url, $opts // {});
}

# Returns { storage, content, filename } when $dest is "<content dir>/<name>" of an isolib
# storage, undef otherwise.
sub find_target {
    my ($dest) = @_;

    return undef if !defined($dest) || ref($dest);
    my ($dir, $name) = $dest =~ m!^(.*)/([^/]+)$! or return undef;

    require PVE::Storage;
    my $cfg = eval { PVE::Storage::config() };
    if (my $err = $@) {
        warn "isolib: unable to read the storage configuration, not routing '$dest': $err";
        return undef;
    }
    my $ids = ref($cfg) eq 'HASH' && ref($cfg->{ids}) eq 'HASH' ? $cfg->{ids} : {};

    for my $storage (sort keys %$ids) {
        my $scfg = $ids->{$storage};
        next if ref($scfg) ne 'HASH' || ($scfg->{type} // '') ne 'isolib';
        for my $content (@CONTENT_TYPES) {
            my $subdir = eval { PVE::Storage::Custom::IsolibPlugin->get_subdir($scfg, $content) };
            next if !defined($subdir);
            return { storage => $storage, content => $content, filename => $name }
                if same_dir($dir, $subdir);
        }
    }
    return undef;
}

sub canonical_dir {
    my ($dir) = @_;
    $dir =~ s!/+!/!g;
    1 while $dir =~ s!/\./!/!g;
    $dir =~ s!/\.$!!;
    $dir =~ s!(.)/$!$1!;
    return $dir;
}

# Status.pm builds the destination from get_subdir itself, so the strings normally match; the
# inode comparison covers symlinked or differently spelled paths.
sub same_dir {
    my ($x, $y) = @_;
    return 1 if canonical_dir($x) eq canonical_dir($y);
    my @sx = stat($x) or return 0;
    my @sy = stat($y) or return 0;
    return $sx[0] == $sy[0] && $sx[1] == $sy[1];
}

# The daemon's download-url parameters for PVE's $opts (see pve-common's
# download_file_from_url for the keys). http_proxy/https_proxy and assert_file_validity have no
# counterpart: the daemon uses its own proxy setting and runs PVE's content checks itself.
sub daemon_params {
    my ($target, $url, $opts) = @_;

    my $params = {
        url => $url,
        content => $target->{content},
        filename => $target->{filename},
    };

    for my $algo (@CHECKSUM_ORDER) {
        my $sum = $opts->{"${algo}sum"};
        next if !defined($sum);
        $params->{checksum} = $sum;
        $params->{'checksum-algorithm'} = $algo;
        last;
    }
    # Same check and text as the original, which PVE relies on when hash_required is set.
    die "checksum required but not specified\n"
        if $opts->{hash_required} && !defined($params->{checksum});

    if (defined(my $cmd = $opts->{decompression_command})) {
        my $joined = join(' ', ref($cmd) eq 'ARRAY' ? @$cmd : ($cmd));
        my $name = $DECOMPRESSION_NAME{$joined}
            // die "isolib: unsupported decompression command '$joined'\n";
        $params->{compression} = $name;
    }

    $params->{'verify-certificates'} =
        ($opts->{verify_certificates} // 1) ? JSON::PP::true : JSON::PP::false;

    return $params;
}

sub run_routed {
    my ($target, $url, $opts) = @_;

    my $params = daemon_params($target, $url, $opts);
    my $client = PVE::Isolib::Client->new();

    # PVE's worker dies on INT/QUIT/TERM ("received interrupt"). Until the daemon task exists
    # the signal is only noted, so a task started in the meantime is not left running; after
    # that the handler dies to break out of the poll, and the task is stopped below.
    my $stop_signal;
    my $die_on_signal = 0;
    my $on_signal = sub {
        $stop_signal //= $_[0];
        die "received interrupt\n" if $die_on_signal;
    };
    local $SIG{TERM} = $on_signal;
    local $SIG{INT} = $on_signal;
    local $SIG{QUIT} = $on_signal;

    my $pve_task = pve_task();
    my $upid = $client->start_download(
        $target->{storage}, $params,
        headers => $pve_task ? { $PVE_TASK_HEADER => $pve_task } : {},
    );
    # PVE's log names the daemon's task, and the daemon's log names PVE's.
    {
        local $| = 1;
        print "isolib task: $upid\n";
    }

    my $exitstatus = eval {
        $die_on_signal = 1;
        die "received interrupt\n" if $stop_signal;
        follow_task($client, $upid);
    };
    my $err = $@;
    $die_on_signal = 0;

    if (!defined($exitstatus)) {
        # Interrupted, or the daemon went away while we followed: stop the daemon task so it
        # does not keep writing into the storage behind PVE's back.
        $exitstatus = stop_daemon_task($client, $upid);
        die $err if !$stop_signal;
        die "received interrupt\n" if !defined($exitstatus);
    }

    return if $exitstatus eq 'OK' || $exitstatus =~ m/^WARNINGS: \d+$/;
    $exitstatus = Encode::encode_utf8($exitstatus) if utf8::is_utf8($exitstatus);
    die "$exitstatus\n";
}

# The UPID of the PVE task this process is the worker of, or undef outside a worker.
sub pve_task {
    my ($upid) = ($0 // '') =~ $WORKER_NAME_RE;
    return $upid;
}

# Copies the task's log lines to STDOUT until it stops; returns its exit status.
sub follow_task {
    my ($client, $upid) = @_;

    my $seen = 0;
    while (1) {
        # Status before log: once the status says stopped, the log read after it is complete.
        my $status = $client->task_status($upid, timeout => $POLL_TIMEOUT);
        $seen = copy_log($client, $upid, $seen);
        if (($status->{status} // '') eq 'stopped') {
            return $status->{exitstatus} // 'unexpected status';
        }
        Time::HiRes::sleep($POLL_INTERVAL);
    }
}

sub copy_log {
    my ($client, $upid, $seen) = @_;

    my ($lines, $total) = $client->task_log($upid, $seen, timeout => $POLL_TIMEOUT);
    return $seen if ref($lines) ne 'ARRAY';

    # Printed like the original prints (to the selected handle, STDOUT in a PVE worker), and
    # unbuffered so each line reaches the task log as it comes.
    local $| = 1;
    for my $entry (@$lines) {
        next if ref($entry) ne 'HASH';
        my ($n, $text) = ($entry->{n} // 0, $entry->{t} // '');
        next if $n <= $seen;
        # An empty or not yet created log is answered with one placeholder line.
        return $seen if $seen == 0 && $total == 1 && $text =~ $NO_LINES_RE;
        $seen = $n;
        next if $text =~ $FINAL_LINE_RE;
        print Encode::encode_utf8($text), "\n";
    }
    return $seen;
}

# Best effort: asks the daemon to stop the task and returns its exit status if it has stopped
# by then, undef otherwise.
sub stop_daemon_task {
    my ($client, $upid) = @_;

    my $deadline = Time::HiRes::time() + $STOP_BUDGET;
    eval { $client->stop_task($upid, timeout => $STOP_BUDGET - 0.5) };
    warn "isolib: unable to stop daemon task $upid: $@" if $@;

    my $left = $deadline - Time::HiRes::time();
    $left = 0.2 if $left < 0.2;
    my $status = eval { $client->task_status($upid, timeout => $left) };
    return undef if !$status || ($status->{status} // '') ne 'stopped';
    return $status->{exitstatus} // 'unexpected status';
}

1;
