package PVE::Storage::Plugin;

# Test stand-in for pve-storage's PVE::Storage::Plugin, written for these tests (no upstream
# code). It keeps the base-class signatures of spec/clients-and-plugin.md §D.2 for what the
# isolib plugin inherits or PVE's download-url handler calls, and folds in the part of
# PVE::SectionConfig the loader and storage.cfg parsing need (register, lookup, init,
# parse_config), including SectionConfig's rule that property names are global.

use strict;
use warnings;

use File::Path ();

use PVE::Cluster ();

# Content type -> default subdirectory below `path` (pve-api.md §7.6).
my $vtype_subdirs = {
    images => 'images',
    rootdir => 'private',
    iso => 'template/iso',
    vztmpl => 'template/cache',
    backup => 'dump',
    snippets => 'snippets',
    import => 'import',
};

# The base's own properties; plugins add theirs through properties() at init().
my $defaultData = {
    propertyList => {
        type => { description => 'Storage type.', type => 'string' },
        storage => { description => 'The storage identifier.', type => 'string' },
        nodes => { type => 'string', optional => 1 },
        content => { type => 'string', optional => 1 },
        disable => { type => 'boolean', optional => 1 },
        shared => { type => 'boolean', optional => 1 },
        'content-dirs' => { type => 'string', optional => 1 },
        'prune-backups' => { type => 'string', optional => 1 },
        'max-protected-backups' => { type => 'integer', optional => 1 },
        format => { type => 'string', optional => 1 },
    },
    options => {},
    plugins => {},
    plugindata => {},
};

my $initialized = 0;

PVE::Cluster::cfs_register_file(
    'storage.cfg',
    sub { __PACKAGE__->parse_config(@_) },
    sub { die "storage.cfg writing is not part of this stand-in\n" },
);

# --- SectionConfig part ---

sub private {
    return $defaultData;
}

sub type {
    die "overwrite me";
}

sub properties {
    return {};
}

sub options {
    return {};
}

sub plugindata {
    return {};
}

sub register {
    my ($class) = @_;

    my $type = $class->type();
    my $pdata = $class->private();
    die "duplicate plugin registration (type = $type)\n" if defined($pdata->{plugins}->{$type});

    $pdata->{plugindata}->{$type} = $class->plugindata();
    $pdata->{plugins}->{$type} = $class;
    return;
}

sub lookup {
    my ($class, $type) = @_;

    my $plugin = $class->private()->{plugins}->{$type};
    die "unknown section type '$type'\n" if !$plugin;
    return $plugin;
}

# Merges every plugin's new properties into the global list and checks each plugin's options
# against it: a property declared twice, or an option naming no declared property, is fatal.
sub init {
    my ($class) = @_;

    die "init called twice\n" if $initialized;
    my $pdata = $class->private();
    my $list = $pdata->{propertyList};

    for my $type (sort keys %{ $pdata->{plugins} }) {
        my $props = $pdata->{plugins}->{$type}->properties();
        for my $p (sort keys %$props) {
            die "duplicate property '$p'\n" if defined($list->{$p});
            $list->{$p} = { %{ $props->{$p} }, optional => 1 };
        }
    }
    for my $type (sort keys %{ $pdata->{plugins} }) {
        my $opts = $pdata->{plugins}->{$type}->options();
        for my $p (sort keys %$opts) {
            die "undefined property '$p' used by plugin '$type'\n" if !defined($list->{$p});
        }
        $pdata->{options}->{$type} = $opts;
    }
    $initialized = 1;
    return;
}

sub split_list {
    my ($value) = @_;
    return grep { length } split(/[\s,;]+/, $value // '');
}

sub decode_value {
    my ($class, $type, $key, $value) = @_;

    my $valid = $defaultData->{plugindata}->{$type}->{content}->[0] // {};
    if ($key eq 'content') {
        my $res = {};
        for my $c (split_list($value)) {
            if (!$valid->{$c}) {
                warn "storage does not support content type '$c'\n";
                next;
            }
            $res->{$c} = 1;
        }
        return $res;
    } elsif ($key eq 'nodes') {
        return { map { $_ => 1 } split_list($value) };
    } elsif ($key eq 'content-dirs') {
        my $res = {};
        for my $item (split_list($value)) {
            my ($c, $path) = split(/=/, $item, 2);
            if (!$valid->{$c}) {
                warn "storage does not support content type '$c'\n";
                next;
            }
            $res->{$c} = $path;
        }
        return $res;
    }
    return $value;
}

# storage.cfg: "<type>: <id>" headers, indented "key value" lines, a blank line ends a section
# (pve-api.md §9). Returns { ids => { <id> => { type, ... } }, order => { <id> => n } }.
sub parse_config {
    my ($class, $filename, $raw) = @_;

    my $cfg = { ids => {}, order => {} };
    my $pdata = $class->private();
    my $order = 0;
    my ($id, $section, $skip);

    my $finish = sub {
        if ($section && !$skip) {
            my $def = $pdata->{plugindata}->{ $section->{type} };
            $section->{content} //= { %{ $def->{content}->[1] } } if $def && $def->{content};
            $cfg->{ids}->{$id} = $section;
            $cfg->{order}->{$id} = ++$order;
        }
        ($id, $section, $skip) = (undef, undef, 0);
    };

    for my $line (split(/\n/, $raw // ''), '') {
        next if $line =~ m/^\s*#/;
        if ($line =~ m/^\s*$/) {
            $finish->();
        } elsif ($line =~ m/^(\S+):\s*(\S+)\s*$/) {
            $finish->();
            my $type = lc($1);
            ($id, $section) = ($2, { type => $type });
            if (!$pdata->{plugins}->{$type}) {
                warn "ignoring section '$id' of unknown type '$type' in '$filename'\n";
                $skip = 1;
            }
        } elsif ($section && $line =~ m/^\s+(\S+)(?:\s+(.*\S))?\s*$/) {
            next if $skip;
            my ($key, $value) = ($1, $2 // 1);
            $section->{$key} = $class->decode_value($section->{type}, $key, $value);
        } else {
            warn "syntax error in '$filename': '$line'\n";
        }
    }
    return $cfg;
}

# --- storage implementation (directory layout under `path`) ---

sub get_subdir {
    my ($class, $scfg, $vtype) = @_;

    my $path = $scfg->{path};
    die "storage definition has no path\n" if !$path;
    die "unknown vtype '$vtype'\n" if !exists($vtype_subdirs->{$vtype});

    my $subdir = $scfg->{'content-dirs'}->{$vtype} // $vtype_subdirs->{$vtype};
    return "$path/$subdir";
}

sub parse_volname {
    my ($class, $volname) = @_;

    if ($volname =~ m!^iso/([^/]+\.(?:iso|img))$!i) {
        return ('iso', $1, undef, undef, undef, undef, 'raw');
    } elsif ($volname =~ m!^vztmpl/([^/]+\.tar(?:\.(?:gz|xz|zst|bz2))?)$!i) {
        return ('vztmpl', $1, undef, undef, undef, undef, 'raw');
    } elsif ($volname =~ m!^import/([^/]+\.(ova|ovf|qcow2|raw|vmdk))$!) {
        return ('import', $1, undef, undef, undef, undef, $2);
    }
    die "unable to parse directory volume name '$volname'\n";
}

sub filesystem_path {
    my ($class, $scfg, $volname, $snapname) = @_;

    my ($vtype, $name) = $class->parse_volname($volname);
    my $dir = $class->get_subdir($scfg, $vtype);
    my $path = "$dir/$name";
    return wantarray ? ($path, undef, $vtype) : $path;
}

sub path {
    my ($class, $scfg, $volname, $storeid, $snapname) = @_;
    return $class->filesystem_path($scfg, $volname, $snapname);
}

# PVE's base: a volume of a path-based storage must exist.
sub activate_volume {
    my ($class, $storeid, $scfg, $volname, $snapname, $cache) = @_;

    my $path = $class->filesystem_path($scfg, $volname, $snapname);
    if ($scfg->{path}) {
        die "volume '$storeid:$volname' does not exist\n" if !-e $path;
    } else {
        die "volume '$storeid:$volname' does not exist\n" if !-b $path;
    }
    return;
}

sub check_connection {
    my ($class, $storeid, $scfg) = @_;
    return 1;
}

# The path must be a directory; the content subdirectories are created, and two content types
# sharing one directory is refused.
sub activate_storage {
    my ($class, $storeid, $scfg, $cache) = @_;

    my $path = $scfg->{path};
    die "storage definition has no path\n" if !$path;
    die "unable to activate storage '$storeid' - directory '$path' does not exist or is unreachable\n"
        if !-d $path;

    return if defined($scfg->{'create-subdirs'}) && !$scfg->{'create-subdirs'};

    my %seen;
    for my $vtype (sort keys %{ $scfg->{content} // {} }) {
        next if $vtype eq 'none';
        my $dir = $class->get_subdir($scfg, $vtype);
        die "storage '$storeid' uses directory $dir for multiple content types\n" if $seen{$dir}++;
        File::Path::make_path($dir);
    }
    return;
}

sub deactivate_storage {
    my ($class, $storeid, $scfg, $cache) = @_;
    return;
}

1;
