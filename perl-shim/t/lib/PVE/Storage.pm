package PVE::Storage;

# Test stand-in for pve-storage's PVE::Storage, written for these tests (no upstream code).
#
# Like the real module it registers the built-in plugins (here only `dir`), loads every custom
# plugin with the same checks (derived from PVE::Storage::Plugin, has api(), version inside
# APIVER - APIAGE .. APIVER; failures only warn), then calls PVE::Storage::Plugin->init().
# One difference: PVE scans /usr/share/perl5/PVE/Storage/Custom, this scans
# PVE/Storage/Custom below every @INC entry, so `prove -I perl-shim/lib` finds the shim.
#
# The rest is what PVE's download-url handler (Status.pm) uses: config, storage_check_enabled,
# activate_storage, get_*_dir, normalize_content_filename, decompressor_info and the filename
# patterns.

use strict;
use warnings;

use PVE::Cluster ();
use PVE::Storage::Plugin;
use PVE::Storage::DirPlugin;

use constant APIVER => 15;
use constant APIAGE => 6;

our @CUSTOM_PLUGINS;    # module names that loaded and registered

PVE::Storage::DirPlugin->register();
load_custom_plugins();
PVE::Storage::Plugin->init();

sub load_custom_plugins {
    my %seen;
    for my $inc (@INC) {
        next if ref($inc);
        my $dir = "$inc/PVE/Storage/Custom";
        opendir(my $dh, $dir) or next;
        # Like pve-common's dir_glob_foreach, hand on the regex's capture: readdir's names are
        # tainted, and pvedaemon loads plugins under `perl -T`.
        for my $file (sort map { m/^([^\/]+\.pm)$/ ? $1 : () } readdir($dh)) {
            next if $seen{$file}++;
            my $modname = "PVE::Storage::Custom::$file";
            $modname =~ s/\.pm$//;
            eval {
                require "PVE/Storage/Custom/$file";
                die "not derived from PVE::Storage::Plugin\n"
                    if !$modname->isa('PVE::Storage::Plugin');
                die "does not provide an api() method\n" if !$modname->can('api');
                my $version = $modname->api();
                die "API version $version is newer than current (" . APIVER . ")\n"
                    if $version > APIVER;
                my $min = APIVER - APIAGE;
                die "API version $version is too old (minimum $min)\n" if $version < $min;
                $modname->register();
                push @CUSTOM_PLUGINS, $modname;
                warn "Plugin \"$modname\" uses an older storage API\n" if $version != APIVER;
            };
            warn "Error loading storage plugin \"$modname\": $@" if $@;
        }
        closedir($dh);
    }
    return;
}

# Filename patterns of the download-url handler (pve-api.md §1.3).
our $ISO_EXT_RE_0 = qr/\.(?:iso|img)/i;
our $VZTMPL_EXT_RE_1 = qr/\.(?|(tar)(?!\.)|tar\.(gz|xz|zst|bz2))/i;
our $SAFE_CHAR_CLASS_RE = qr/[a-zA-Z0-9\-\.\+\=\_]/;
our $UPLOAD_IMPORT_EXT_RE_1 = qr/\.(ova|qcow2|raw|vmdk)/;

sub config {
    return PVE::Cluster::cfs_read_file('storage.cfg');
}

sub storage_config {
    my ($cfg, $storeid, $noerr) = @_;

    die "no storage ID specified\n" if !$storeid;
    my $scfg = $cfg->{ids}->{$storeid};
    die "storage '$storeid' does not exist\n" if !$noerr && !$scfg;
    return $scfg;
}

sub storage_check_enabled {
    my ($cfg, $storeid, $node, $noerr) = @_;

    my $scfg = storage_config($cfg, $storeid);
    if ($scfg->{disable}) {
        die "storage '$storeid' is disabled\n" if !$noerr;
        return undef;
    }
    return $scfg;
}

sub activate_storage {
    my ($cfg, $storeid, $cache) = @_;

    my $scfg = storage_check_enabled($cfg, $storeid);
    my $plugin = PVE::Storage::Plugin->lookup($scfg->{type});
    die "storage '$storeid' is not online\n" if !$plugin->check_connection($storeid, $scfg);
    $plugin->activate_storage($storeid, $scfg, $cache // {});
    return;
}

my sub content_dir {
    my ($cfg, $storeid, $vtype) = @_;
    my $scfg = storage_config($cfg, $storeid);
    return PVE::Storage::Plugin->lookup($scfg->{type})->get_subdir($scfg, $vtype);
}

sub get_iso_dir { return content_dir($_[0], $_[1], 'iso') }
sub get_vztmpl_dir { return content_dir($_[0], $_[1], 'vztmpl') }
sub get_import_dir { return content_dir($_[0], $_[1], 'import') }

sub normalize_content_filename {
    my ($filename) = @_;

    chomp($filename);
    $filename =~ s/^.*[\/\\]//;
    $filename =~ s/[^a-zA-Z0-9_.-]/_/g;
    return $filename;
}

sub decompressor_info {
    my ($format, $comp) = @_;

    my $table = {
        iso => {
            gz => ['zcat'],
            lzo => ['lzop', '-d', '-c'],
            zst => ['zstd', '-q', '-d', '-c'],
            bz2 => ['bzcat', '-q'],
        },
    };
    die "ERROR: archive format not defined\n" if !$table->{$format};
    return {
        format => $format,
        compression => $comp,
        decompressor => $comp ? $table->{$format}->{$comp} : undef,
    };
}

1;
