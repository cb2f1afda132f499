#!/usr/bin/perl
# Writes a small MaxMind DB (.mmdb) for the locality tests, in the layout swarmcoord reads:
# country.iso_code (GeoIP2/GeoLite2-Country style) and autonomous_system_number (GeoLite2-ASN
# style, uint32), in one record or in separate files.
#
#   make-test-mmdb.pl [--ip-version 6|4] [--type NAME] OUT.mmdb [CIDR=CC,ASN ...]
#
# Each entry maps a network to a country code and/or an ASN; either part may be empty
# ("127.5.0.0/16=US," has no ASN, "127.6.0.0/16=,64503" no country). Entries are inserted in
# the order given and a later, more specific network overrides an earlier one where they
# overlap. Without entries, a default table is written:
#   127.1.0.0/16 DE AS64500, 127.2.0.0/16 DE AS64501, 127.3.0.0/16 FR AS64500.
# With --ip-version 6 (the default) IPv4 networks are stored in ::/96 and the IPv4-mapped,
# 6to4 and Teredo ranges alias to them, as in MaxMind's own databases. Loopback and other
# reserved networks are allowed, since the tests connect from 127/8.
use strict;
use warnings;

use Getopt::Long qw(GetOptions);
use MaxMind::DB::Writer::Tree;

my $ip_version = 6;
my $type = 'swarmcoord-Test';
GetOptions('ip-version=i' => \$ip_version, 'type=s' => \$type)
    or die "usage: $0 [--ip-version 6|4] [--type NAME] OUT.mmdb [CIDR=CC,ASN ...]\n";
die "usage: $0 [--ip-version 6|4] [--type NAME] OUT.mmdb [CIDR=CC,ASN ...]\n" unless @ARGV >= 1;
die "--ip-version must be 4 or 6\n" unless $ip_version == 4 || $ip_version == 6;
my ($out, @entries) = @ARGV;
@entries = ('127.1.0.0/16=DE,64500', '127.2.0.0/16=DE,64501', '127.3.0.0/16=FR,64500') unless @entries;

my %types = (
    country                        => 'map',
    iso_code                       => 'utf8_string',
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
);

my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version            => $ip_version,
    record_size           => 28,
    database_type         => $type,
    languages             => ['en'],
    description           => { en => 'swarmcoord locality test data' },
    map_key_type_callback => sub { $types{ $_[0] } // die "no MaxMind DB type for key '$_[0]'\n" },
    merge_strategy        => 'none',  # a later insert replaces the overlapping part
    remove_reserved_networks => 0,
    ($ip_version == 6 ? (alias_ipv6_to_ipv4 => 1) : ()),
);

for my $entry (@entries) {
    my ($network, $country, $asn) = $entry =~ m{^([0-9A-Fa-f:.]+/\d+)=([A-Za-z]{2})?,(\d+)?$}
        or die "bad entry '$entry' (want CIDR=CC,ASN with CC or ASN possibly empty)\n";
    my %record;
    $record{country} = { iso_code => uc $country } if defined $country;
    if (defined $asn) {
        $record{autonomous_system_number} = $asn + 0;
        $record{autonomous_system_organization} = "Test AS$asn";
    }
    die "entry '$entry' has neither a country nor an ASN\n" unless %record;
    $tree->insert_network($network, \%record);
}

open my $fh, '>:raw', $out or die "cannot write $out: $!\n";
$tree->write_tree($fh);
close $fh or die "cannot write $out: $!\n";
