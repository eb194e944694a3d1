package PVE::Storage::Custom::IsolibPlugin;

# Storage type `isolib`: a directory storage for ISO images, container templates and import
# images whose downloads are carried out by the isolib daemon.
#
# The daemon keeps PVE's directory layout under `path`, so listing, status and path resolution
# are inherited from PVE::Storage::Plugin. Loading this file also installs the download router
# (PVE::Isolib::Router), which hands download-url transfers into this storage's content
# directories to the daemon. PVE loads every PVE/Storage/Custom/*.pm as a plugin, which is why
# the helpers live under PVE/Isolib/.

use strict;
use warnings;

use base qw(PVE::Storage::Plugin);

use PVE::Isolib::Ensure;
use PVE::Isolib::Router;

# The storage API versions this plugin is known to work with (PVE::Storage::APIVER values).
# It overrides no method whose signature changed between them.
use constant MIN_APIVER => 10;
use constant MAX_APIVER => 15;

PVE::Isolib::Router::install();

# The highest version we support that the running node accepts
# (PVE::Storage::APIVER - APIAGE .. APIVER). When there is none, MAX_APIVER is returned so
# that PVE's loader refuses the plugin with its own message instead of us claiming a version
# we do not implement.
sub pick_api_version {
    my ($apiver, $apiage) = @_;

    return MAX_APIVER if !defined($apiver);
    $apiage //= 0;

    my $candidate = $apiver < MAX_APIVER ? $apiver : MAX_APIVER;
    return $candidate if $candidate >= $apiver - $apiage && $candidate >= MIN_APIVER;
    return MAX_APIVER;
}

sub api {
    # Read at run time and through can(): a constant compiled into this file would be inlined,
    # and an old PVE::Storage might lack APIAGE.
    my ($apiver, $apiage) = eval {
        my $ver = PVE::Storage->can('APIVER');
        my $age = PVE::Storage->can('APIAGE');
        ($ver ? $ver->() : undef, $age ? $age->() : undef);
    };
    return pick_api_version($apiver, $apiage);
}

sub type {
    return 'isolib';
}

sub plugindata {
    return {
        content => [{ iso => 1, vztmpl => 1, import => 1 }, { iso => 1 }],
        'sensitive-properties' => {},
    };
}

# `path` and the rest are already declared (by DirPlugin and the base), and SectionConfig
# property names are global: declaring one again would die with "duplicate property".
sub properties {
    return {};
}

sub options {
    return {
        path => { fixed => 1 },
        'content-dirs' => { optional => 1 },
        nodes => { optional => 1 },
        shared => { optional => 1 },
        disable => { optional => 1 },
        content => { optional => 1 },
    };
}

# Every VM start with an ISO on this storage activates it, so being online depends on the
# directory alone (checked by the inherited activate_storage), never on the daemon: a daemon
# that is down only fails downloads, with a message naming its socket.
sub check_connection {
    my ($class, $storeid, $scfg) = @_;
    return 1;
}

# A volume this node lacks is copied from a node that holds it (PVE::Isolib::Ensure) before
# PVE's own check runs; when that fails, the reason goes to the task log and PVE's message is
# the error. A volume that is there never involves the daemon.
sub activate_volume {
    my ($class, $storeid, $scfg, $volname, $snapname, $cache) = @_;

    my $path = $class->filesystem_path($scfg, $volname, $snapname);
    if (!-e $path) {
        eval { PVE::Isolib::Ensure::ensure_volume($storeid, $volname) };
        if (my $err = $@) {
            local $| = 1;
            print "isolib: unable to copy '$storeid:$volname' to this node: $err";
        }
    }
    return $class->SUPER::activate_volume($storeid, $scfg, $volname, $snapname, $cache);
}

1;
